"""Exit heads after the upper layers, and DACT's halting units: `Exits`, saved as `exits.safetensors`.

After upper layer k + j (j = 0..n-2, n = L - k) an `ExitHead` pools the hidden states (mean over the
document's tokens), maps them through dense + tanh, and gives class logits (B, C) and, for DACT, a
halting logit (B,) (sigmoid: the probability of halting after this layer). After the last layer the
task model's own head is the exit and halting is certain, so a model with exits run to the end
predicts exactly what the task model predicts. The record in erpack_task.json (`early_exit.exits`)
holds the shapes `Exits.from_record` rebuilds; the weights are sealed with the folder. A regression task's
exits have one output, the score (num_labels 1).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from erpack.errors import TaskModelError

EXITS_FILE = "exits.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states (B, T, H) over each document's tokens (mask (B, T)) -> (B, H)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class ExitHead(nn.Module):
    """Pooled classifier (and optional halting unit) on the hidden states after one upper layer."""

    def __init__(self, hidden_size: int, num_labels: int, halting: bool, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)
        self.halt = nn.Linear(hidden_size, 1) if halting else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.tanh(self.dense(mean_pool(hidden, mask)))
        logits = self.out(self.dropout(z))  # (B, C)
        return logits, (self.halt(z).squeeze(-1) if self.halt is not None else None)  # (B,)


class Exits(nn.Module):
    """`count` exit heads, one after each upper layer but the last (whose exit is the task model's head)."""

    def __init__(self, hidden_size: int, num_labels: int, count: int, halting: bool):
        super().__init__()
        self.hidden_size, self.num_labels, self.halting = hidden_size, num_labels, halting
        self.heads = nn.ModuleList([ExitHead(hidden_size, num_labels, halting) for _ in range(count)])

    def record(self) -> dict:
        return {"file": EXITS_FILE, "hidden_size": self.hidden_size, "num_labels": self.num_labels,
                "count": len(self.heads), "halting": self.halting}

    def save(self, folder: Path) -> None:
        """Write exits.safetensors into `folder` (a task model folder being written: it is sealed after)."""
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(Path(folder) / EXITS_FILE))

    @classmethod
    def from_record(cls, folder: Path, record: dict) -> Exits:
        """The exits a task model folder holds, as its record describes them (TaskModelError if they differ)."""
        from safetensors.torch import load_file

        path = Path(folder) / record.get("file", EXITS_FILE)
        try:
            exits = cls(int(record["hidden_size"]), int(record["num_labels"]), int(record["count"]),
                        bool(record["halting"]))
            exits.load_state_dict(load_file(str(path)))
        except FileNotFoundError:
            raise TaskModelError(f"{path}: missing (erpack_task.json records exits); train it again with "
                                 f"--early-exit") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise TaskModelError(f"{path}: does not hold the exits erpack_task.json records "
                                 f"({str(exc).splitlines()[0][:160]}); train it again with --early-exit") from None
        return exits.eval()
