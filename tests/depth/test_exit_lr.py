"""`erpack train --early-exit dact --exit-lr LR`: the exits and halting units train in an optimizer group of their own
at LR (the rest at the run's --lr; default: the run's lr, at least 1e-3), the task model's early_exit record keeps
it, and it is refused without --early-exit or at LR <= 0."""

from __future__ import annotations

import pytest
import torch

from erpack.cli import main
from erpack.depth.exits import Exits
from erpack.depth.runner import ExitModel
from erpack.depth.training import EXIT_LR_FLOOR, ExitSpec, exit_lr
from erpack.errors import InputError
from erpack.train import TaskModel, TrainConfig, train_from_cache
from erpack.train.loop import param_groups
from tests.depth.conftest import FAST


def _initial_exits(tm) -> Exits:
    """The exits a run with seed 0 starts from: drawn after torch.manual_seed(seed + 1) (erpack.depth.training)."""
    r = tm.info["early_exit"]["exits"]
    torch.manual_seed(FAST.get("seed", 0) + 1)
    return Exits(r["hidden_size"], r["num_labels"], r["count"], r["halting"])


def _moved(tm) -> float:
    """The largest change of any exit weight from its initial value."""
    start = _initial_exits(tm).state_dict()
    return max((v - start[k]).abs().max().item() for k, v in ExitModel.of(tm).exits.state_dict().items())


@pytest.fixture(scope="module")
def still_exits(tiny_exit):
    """A dact model whose exits train at 1e-12 while the upper layers and head train at FAST's 1e-3."""
    out = tiny_exit["root"] / "tm-dact-exit-lr"
    s = train_from_cache(tiny_exit["cache"], str(tiny_exit["labels"]), mode="upper", output=out,
                         early_exit=ExitSpec("dact", lr=1e-12), config=TrainConfig(epochs=2, **FAST))
    return out, s


def test_the_exits_train_at_their_own_lr(still_exits, dact_model):
    still, moved = TaskModel.load(still_exits[0]), TaskModel.load(dact_model[0])
    assert _moved(still) < 1e-6  # at 1e-12 the exits and halting units stay where they started
    assert _moved(moved) > 1e-3  # at the run's lr (1e-3) the same initial exits move
    upper = {k: v for k, v in still.model.state_dict().items() if "layer.1." in k}
    other = {k: v for k, v in moved.model.state_dict().items() if "layer.1." in k}
    assert upper and any(not torch.equal(v, other[k]) for k, v in upper.items())  # the layers trained either way


def test_the_record_keeps_the_exit_lr(still_exits, dact_model):
    assert TaskModel.load(still_exits[0]).info["early_exit"]["lr"] == 1e-12
    assert still_exits[1].recycled.notes["early_exit"]["lr"] == 1e-12 and still_exits[1].recycled.lr == 1e-3
    assert TaskModel.load(dact_model[0]).info["early_exit"]["lr"] == FAST["lr"]  # default: the run's lr (1e-3)


def test_the_default_exit_lr_is_the_runs_at_least_head_modes():
    assert exit_lr(ExitSpec("dact"), 1e-4) == EXIT_LR_FLOOR == 1e-3  # upper mode's default lr: 10x
    assert exit_lr(ExitSpec("dact"), 2e-3) == 2e-3  # adapter and head mode (1e-3) or a larger --lr: the run's
    assert exit_lr(ExitSpec("patience", lr=5e-5), 1e-4) == 5e-5  # --exit-lr as given


def test_param_groups_put_the_exits_at_their_lr():
    model = torch.nn.ModuleDict({"model": torch.nn.Linear(3, 2), "exits": torch.nn.Linear(3, 1)})
    model["model"].bias.requires_grad_(False)
    groups = param_groups({n: p for n, p in model.named_parameters() if p.requires_grad}, 1e-4, {"exits": 1e-3})
    assert [(g["lr"], len(g["params"])) for g in groups] == [(1e-4, 1), (1e-3, 2)]
    assert groups[1]["params"][0] is model["exits"].weight
    model["model"].requires_grad_(False)  # head mode on an --init model: only the exits' group is left
    groups = param_groups({n: p for n, p in model.named_parameters() if p.requires_grad}, 1e-4, {"exits": 1e-3})
    assert [g["lr"] for g in groups] == [1e-3]


def test_exit_lr_refused_without_early_exit_or_at_zero(tiny_exit, tmp_path, capsys):
    base = ["train", str(tiny_exit["cache"]), "--labels", str(tiny_exit["labels"]), "-o", str(tmp_path / "tm")]
    assert main(base + ["--exit-lr", "1e-3"]) == 2
    assert "--exit-lr" in (err := capsys.readouterr().err) and "--early-exit" in err
    assert main(base + ["--early-exit", "dact", "--exit-lr", "0"]) == 2
    assert "above 0" in capsys.readouterr().err
    assert not (tmp_path / "tm").exists()
    with pytest.raises(InputError, match="above 0"):
        ExitSpec("dact", lr=-1e-3)
