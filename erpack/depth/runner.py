"""Early exit at inference in PyTorch: `ExitModel`, with batch compaction.

    em = ExitModel.of(tm)                       # a TaskModel whose record has `early_exit`
    logits, layers = em.run(hidden, mask)       # (B, C) prediction, (B,) upper layers each document ran

`run` goes layer by layer (erpack.depth.segments): after each layer the exit (the task head after the
last) and the rule (erpack.depth.rules) decide which documents stop; those leave the batch (their rows,
mask and rule state are dropped, and the padding no remaining document needs is cut), and the rest go
on. `run(..., compact=False)` runs every document through every layer and applies the same decisions:
the reference the compacted run equals per document. `outputs` gives every exit's output (training,
the validation table the threshold is chosen on).
"""

from __future__ import annotations

import torch

from erpack.depth.compact import run_compacted
from erpack.depth.exits import EXITS_FILE, Exits
from erpack.depth.losses import mixture_logits, mixture_scores
from erpack.depth.rules import RULES, Rule, check_threshold
from erpack.depth.segments import Segments
from erpack.errors import TaskModelError


def exit_outputs(segments: Segments, exits: Exits, hidden: torch.Tensor, mask: torch.Tensor):
    """Every layer run: (n x logits (B, C), halting logits (B, n-1) or None), the last from the task head."""
    logits, halts = [], []
    for j in range(len(segments)):
        hidden = segments.layer(j, hidden, mask)
        if j < len(segments) - 1:
            z, h = exits.heads[j](hidden, mask)
            logits.append(z)
            halts.append(h)
        else:
            logits.append(segments.head(hidden, mask))
    return logits, (torch.stack(halts, dim=1) if exits.halting and halts else None)


def all_layers_logits(rule: str, logits: list[torch.Tensor], halting, regression: bool = False) -> torch.Tensor:
    """The prediction with every layer run: DACT's mixture (regression: of the scores), else the task head's."""
    if rule != "dact":
        return logits[-1]
    return mixture_scores(logits, halting) if regression else mixture_logits(logits, halting)


class ExitModel:
    """A task model's upper stack with exits after each layer and the rule that stops documents."""

    def __init__(self, tm, exits: Exits, rule: Rule):
        self.tm, self.exits, self.rule = tm, exits, rule
        self.segments = Segments(tm.model, tm.layer)

    @classmethod
    def of(cls, tm, threshold: float | None = None) -> ExitModel:
        """The exits and rule a loaded task model records (`threshold` replaces the recorded one)."""
        record = tm.info.get("early_exit")
        if not isinstance(record, dict):
            raise TaskModelError(f"{tm.path or 'the task model'} has no exits (its erpack_task.json has no "
                                 f"early_exit); train one with erpack train ... --early-exit dact|patience|entropy")
        if record.get("rule") not in RULES or not isinstance(record.get("threshold"), int | float):
            raise TaskModelError(f"{tm.path}: erpack_task.json's early_exit record has no known rule and threshold "
                                 f"({record.get('rule')!r}, {record.get('threshold')!r}); train it again with --early-exit")
        exits = Exits.from_record(tm.path, record.get("exits", {"file": EXITS_FILE}))
        t = record["threshold"] if threshold is None else threshold
        regression = tm.task == "regression"
        rule = Rule(record["rule"], check_threshold(record["rule"], t, len(tm.labels), exits_layers(tm), regression),
                    regression)
        em = cls(tm, exits, rule)
        em.to(next(tm.model.parameters()).device)
        return em

    @property
    def layers(self) -> int:
        return len(self.segments)

    def to(self, device) -> ExitModel:
        self.tm.to(device)
        self.exits.to(device)
        return self

    def eval(self) -> ExitModel:
        self.tm.model.eval()
        self.segments.eval()
        self.exits.eval()
        return self

    def outputs(self, hidden, mask):
        return exit_outputs(self.segments, self.exits, hidden, mask)

    @torch.no_grad()
    def run(self, hidden: torch.Tensor, mask: torch.Tensor, compact: bool = True):
        """(logits (B, C), layers (B,)) as numpy arrays: each document's prediction and the upper layers it ran."""
        self.eval()
        n = self.layers

        def layer(j, hidden, mask):
            hidden = self.segments.layer(j, hidden, mask)
            if j < n - 1:
                z, h = self.exits.heads[j](hidden, mask)
                return hidden, z.float().cpu().numpy(), None if h is None else h.float().cpu().numpy()
            return hidden, self.segments.head(hidden, mask).float().cpu().numpy(), None

        return run_compacted(self.rule, layer, hidden, mask, n, self.exits.num_labels, compact)


def exits_layers(tm) -> int:
    """Upper layers of a task model (L - k), the exits' count + 1."""
    from erpack.models.split import depth

    return depth(tm.model) - tm.layer
