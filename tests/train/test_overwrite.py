"""Task model outputs are written whole: an existing one is refused without --overwrite, and a SIGKILL at
any point of `erpack train -o EXISTING --overwrite` leaves the old model or the new one, never a mix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from erpack.cli import main
from erpack.train import TaskModel, TrainConfig, train_from_cache
from erpack.train.taskfolder import TASK_FILE


def _train_cmd(tiny, out, seed: int, *extra):
    return [sys.executable, "-m", "erpack", "train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "-o",
            str(out), "--epochs", "1", "--seed", str(seed), "--mode", "upper", *extra]


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")


def _seed_of(folder) -> int:
    return json.loads((folder / TASK_FILE).read_text())["training"]["config"]["seed"]


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def test_existing_output_is_refused_without_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "task"
    train_from_cache(tiny["cache"], str(tiny["labels"]), mode="head", output=out, config=TrainConfig(epochs=1))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "-o", str(out), "--epochs", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out} exists already" in err and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(argv + ["--mode", "head", "--seed", "3", "--overwrite"]) == 0
    assert _seed_of(out) == 3 and TaskModel.load(out).mode == "head"
    assert _siblings(out) == []


# Paths at whose appearance the run is killed: inside the temporary folder `.task.partial-PID` ("" is
# the folder itself), or "OUT/baseline" (the new folder swapped in, the old one not yet removed); None
# lets the run finish.
KILL_AT = ["", "config.json", "model.safetensors", "baseline", "baseline/model.safetensors", TASK_FILE,
           "OUT/baseline", None]


def _run_and_kill(cmd, out, at):
    """Start `cmd`; SIGKILL it as soon as `at` exists in its temporary folder. Returns (rc, seen)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = out.with_name(f".{out.name}.partial-{proc.pid}")
    target = None if at is None else out / at[4:] if at.startswith("OUT/") else partial / at
    seen = False
    while proc.poll() is None and target is not None:
        if target.exists():
            proc.send_signal(signal.SIGKILL)
            seen = True
            break
        time.sleep(0.0005)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, seen, err.decode(errors="replace")


def test_sigkill_during_overwrite_leaves_the_old_model_or_the_new_one(tiny, tmp_path):
    out = tmp_path / "task"
    train_from_cache(tiny["cache"], str(tiny["labels"]), mode="head", output=out, config=TrainConfig(epochs=1))
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    outcomes = []
    for at in KILL_AT:
        rc, seen, err = _run_and_kill(_train_cmd(tiny, out, 1, "--overwrite", "--baseline"), out, at)
        assert "Traceback" not in err, err
        assert rc in ((-signal.SIGKILL, 0) if seen else (0,)), (at, rc, err)  # 0: it ended before the kill
        tm = TaskModel.load(out)  # loads: every checksum holds, so the folder is one whole model
        if _seed_of(out) == 0:
            assert {p.name: p.read_bytes() for p in out.iterdir()} == old, f"killed at {at!r}: not the old model"
            assert not (out / "baseline").exists()
        else:
            assert _seed_of(out) == 1 and tm.mode == "upper", at
            assert TaskModel.load(out / "baseline").input == "text"
        outcomes.append((at, seen, _seed_of(out)))
    print("kill point, hit, seed left:", outcomes)  # pytest -s shows which points were hit
    killed = [o for o in outcomes if o[1]]
    assert len(killed) >= 3, outcomes  # the temporary folder is seen at least; most points are hit
    assert ("", True, 0) in outcomes, outcomes  # a kill while the new folder is being written keeps the old
    assert ("OUT/baseline", True, 1) in outcomes, outcomes  # a kill once it is swapped in keeps the new
    assert outcomes[-1][2] == 1  # the run left to finish replaced the model
    # the temporary folders the killed runs left are cleaned by the next write of the same output
    assert main(["train", str(tiny["cache"]), "--labels", str(tiny["labels"]), "-o", str(out), "--epochs", "1",
                 "--mode", "head", "--seed", "2", "--overwrite"]) == 0
    assert _siblings(out) == [] and _seed_of(out) == 2


def test_leftover_from_a_killed_run_is_cleaned_and_a_failed_write_leaves_nothing(tmp_path):
    from erpack.store.atomic import atomic_folder

    out = tmp_path / "m"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".m.partial-{int(dead.stdout)}"
    leftover.mkdir()
    (leftover / "half").write_text("x")
    notes: list = []
    with atomic_folder(out, notes=notes) as tmp:
        (tmp / "a").write_text("new")
    assert (out / "a").read_text() == "new" and not leftover.exists()
    assert notes and "removed" in notes[0]
    with pytest.raises(RuntimeError):
        with atomic_folder(out, overwrite=True) as tmp:
            (tmp / "a").write_text("newer")
            raise RuntimeError("stop")
    assert (out / "a").read_text() == "new" and _siblings(out) == []
