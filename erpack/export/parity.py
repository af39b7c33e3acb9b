"""Does the ONNX graph compute what PyTorch computes? Run both on the same batches and compare.

Document logits (B, C) are compared everywhere; outputs per token (B, T, ·): the lower stack's hidden
states, a token task's logits) on real tokens only (what padding positions hold is undefined and never
stored or read). The report keeps the largest and mean
absolute difference per batch shape; `passed` is max_diff <= tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from erpack.export.inputs import real_rows

TOLERANCE = 1e-4


@dataclass
class ParityReport:
    tolerance: float
    max_diff: float = 0.0
    mean_diff: float = 0.0
    cases: list[dict] = field(default_factory=list)  # {"shape": [B, T], "padded": bool, "max_diff", "mean_diff"}

    @property
    def passed(self) -> bool:
        return bool(self.max_diff <= self.tolerance)

    def add(self, shape, padded: bool, diff: np.ndarray) -> None:
        case = {"shape": list(shape), "padded": bool(padded), "max_diff": float(diff.max(initial=0.0)),
                "mean_diff": float(diff.mean()) if diff.size else 0.0}
        self.cases.append(case)
        self.max_diff = max(self.max_diff, case["max_diff"])
        self.mean_diff = float(np.mean([c["mean_diff"] for c in self.cases]))

    def as_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)

    def summary(self) -> str:
        worst = max(self.cases, key=lambda c: c["max_diff"]) if self.cases else None
        return (f"max |diff| {self.max_diff:.2e}, mean {self.mean_diff:.2e} over {len(self.cases)} batches"
                + (f" (worst: shape {worst['shape']}{', padded' if worst['padded'] else ''})" if worst else "")
                + f"; tolerance {self.tolerance:.0e}: {'pass' if self.passed else 'FAIL'}")


@torch.no_grad()
def upper_parity(upper, session, batches, tolerance: float = TOLERANCE) -> ParityReport:
    """Compare `upper(hidden, mask)` with the graph on each (hidden (B, T, H), mask (B, T)) batch."""
    upper.eval()
    report = ParityReport(tolerance)
    for hidden, mask in batches:
        ref = upper(torch.from_numpy(hidden), torch.from_numpy(mask)).float().numpy()
        got = session.run({"hidden_states": hidden, "attention_mask": mask})[0]
        report.add(hidden.shape[:2], bool((mask == 0).any()), np.abs(real_rows(got, mask) - real_rows(ref, mask)))
    return report


def _token_parity(fn, session, batches, tolerance: float) -> ParityReport:
    """Compare `fn(input_ids, mask, token_type_ids or None)` with the graph on each batch of token feeds:
    outputs (B, C) whole, outputs (B, T, ·) on real tokens."""
    report = ParityReport(tolerance)
    names = set(session.input_names)
    with torch.no_grad():
        for feeds in batches:
            feeds = {k: v for k, v in feeds.items() if k in names}
            t = {k: torch.from_numpy(v) for k, v in feeds.items()}
            ref = fn(t["input_ids"], t["attention_mask"], t.get("token_type_ids")).float().numpy()
            got = session.run(feeds)[0]
            mask = feeds["attention_mask"]
            report.add(feeds["input_ids"].shape, bool((mask == 0).any()),
                       np.abs(real_rows(got, mask) - real_rows(ref, mask)).ravel())
    return report


def lower_parity(lower, session, batches, tolerance: float = TOLERANCE) -> ParityReport:
    """Compare `lower(input_ids, mask[, token_type_ids])` (B, T, H) with the graph on real tokens."""
    lower.eval()
    return _token_parity(lower, session, batches, tolerance)


def full_parity(full, session, batches, tolerance: float = TOLERANCE) -> ParityReport:
    """Compare `full(input_ids, mask[, token_type_ids])` logits (B, C), or a token task's (B, T, C) on real
    tokens, with the graph."""
    full.eval()
    return _token_parity(full, session, batches, tolerance)


def graph_agreement(reference, candidate, batches) -> dict:
    """How far `candidate`'s outputs are from `reference`'s (two Sessions, e.g. fp32 and int8 graphs):
    max and mean |diff| of the outputs, and for class logits (B, C > 1) the share of rows whose argmax
    agrees; for a regression score (B, 1), whose argmax always agrees, the Pearson r of the scores. A
    token task's logits (B, T, C): a row is a real token (`tokens`: True in the result)."""
    diffs, agree, rows, scores, per_token = [], 0, 0, [], False
    for hidden, mask in batches:
        feeds = {"hidden_states": hidden, "attention_mask": mask}
        a, b = reference.run(feeds)[0], candidate.run(feeds)[0]
        per_token = per_token or a.ndim == 3
        a, b = real_rows(a, mask), real_rows(b, mask)
        diffs.append(np.abs(a - b).reshape(len(a), -1).max(axis=1))
        if a.ndim == 2 and a.shape[1] == 1:
            scores.append(np.stack([a[:, 0], b[:, 0]]))  # (2, B)
        elif a.ndim == 2:
            agree += int((a.argmax(axis=1) == b.argmax(axis=1)).sum())
        rows += len(a)
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    out = {"rows": rows, "max_diff": float(d.max(initial=0.0)), "mean_diff": float(d.mean()) if d.size else 0.0,
           "argmax_agreement": agree / rows if rows and not scores else None}
    if per_token:
        out["tokens"] = True
    if scores:
        out["pearson"] = _pearson(np.concatenate(scores, axis=1))
    return out


def _pearson(pairs: np.ndarray) -> float | None:
    """Pearson r of the two rows of `pairs` (2, N); None when either is constant."""
    x, y = pairs.astype(np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])
