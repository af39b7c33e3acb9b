"""What trains the exits: DACT's loss with its ponder penalty, or the weighted exit cross-entropy.

- dact: cross-entropy of the halting-weighted mixture of the exits' softmax outputs (the prediction of
  every layer run, erpack.depth.rules), plus the mean cross-entropy of the exits (each exit is also a
  classifier on its own: the stopping test compares their accumulated outputs), plus `ponder` times the
  expected share of the upper layers run, sum_j R_{j-1} / n (R: the halting mass not given out yet).
- patience, entropy (PABEE, DeeBERT): the exits' cross-entropies weighted by depth, sum_j (j+1) CE_j /
  sum_j (j+1), so the deeper (better informed) exits count more and the last, the task head, most.
- dact for regression (each exit gives a score): the squared error of the halting-weighted mixture of the
  scores, sum_j w_j s_j, plus the mean squared error of the exits (the stopping rule gives the unspent mass
  to the score of the exit a document stops at, so each must be a regressor on its own), plus the same
  ponder penalty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def halting_weights(halting: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (B, n), reach (B, n)): each exit's share of the mixture and the probability layer j is reached,
    from halting logits (B, n-1); the last layer halts with certainty."""
    h = torch.cat([torch.sigmoid(halting.float()), torch.ones(halting.shape[0], 1, device=halting.device)], dim=1)
    reach = torch.cumprod(torch.cat([torch.ones_like(h[:, :1]), 1 - h[:, :-1]], dim=1), dim=1)  # R_{j-1}
    return h * reach, reach


def exit_loss(rule: str, logits: list[torch.Tensor], halting: torch.Tensor | None, y: torch.Tensor,
              ponder: float = 0.0, regression: bool = False) -> torch.Tensor:
    """The training loss of `rule` over the exits' logits (n x (B, C); regression: scores n x (B, 1)) and
    halting logits (B, n-1)."""
    n = len(logits)
    if regression:  # dact only (erpack.depth.rules.REGRESSION_RULES)
        w, reach = halting_weights(halting, n)
        mses = torch.stack([F.mse_loss(z.float().squeeze(-1), y.float()) for z in logits])  # (n,)
        return F.mse_loss(mixture_scores(logits, halting).squeeze(-1), y.float()) + mses.mean() \
            + ponder * reach.sum(1).mean() / n
    ces = torch.stack([F.cross_entropy(z.float(), y) for z in logits])  # (n,)
    if rule != "dact":
        depth = torch.arange(1, n + 1, dtype=ces.dtype, device=ces.device)
        return (depth * ces).sum() / depth.sum()
    w, reach = halting_weights(halting, n)
    probs = torch.stack([torch.softmax(z.float(), dim=1) for z in logits], dim=1)  # (B, n, C)
    mixture = (w.unsqueeze(-1) * probs).sum(1).clamp(min=1e-12)  # (B, C)
    return F.nll_loss(torch.log(mixture), y) + ces.mean() + ponder * reach.sum(1).mean() / n


def mixture_logits(logits: list[torch.Tensor], halting: torch.Tensor) -> torch.Tensor:
    """Log of the halting-weighted mixture (B, C): DACT's prediction with every layer run."""
    w, _ = halting_weights(halting, len(logits))
    probs = torch.stack([torch.softmax(z.float(), dim=1) for z in logits], dim=1)
    return torch.log((w.unsqueeze(-1) * probs).sum(1).clamp(min=1e-12))


def mixture_scores(logits: list[torch.Tensor], halting: torch.Tensor) -> torch.Tensor:
    """The halting-weighted mixture of the exits' scores (B, 1): DACT's regression output with every layer run."""
    w, _ = halting_weights(halting, len(logits))
    return (w.unsqueeze(-1) * torch.stack([z.float() for z in logits], dim=1)).sum(1)
