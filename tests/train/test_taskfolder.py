"""Damaged, mixed and altered task model folders: each is refused by eval, inspect and export with a
message naming the file (exit 2, no traceback); a pickle weights file is refused unopened."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest

from erpack.cli import main
from erpack.train import TrainConfig, train_from_cache
from erpack.train.taskfolder import TASK_FILE, write_task_file


@pytest.fixture(scope="module")
def good(tiny, tmp_path_factory):
    """A task model folder trained on the tiny cache (1 epoch, head only)."""
    out = tmp_path_factory.mktemp("good") / "task"
    train_from_cache(tiny["cache"], str(tiny["labels"]), mode="head", output=out, config=TrainConfig(epochs=1))
    return out


class _Opens:
    """Pickled as a call of open(path, "w"): unpickling it creates `path` (proof that it was loaded)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _edit(key, value=None, drop=False):
    def damage(folder):
        info = json.loads((folder / TASK_FILE).read_text())
        if drop:
            info.pop(key)
        else:
            info[key] = value
            if key == "layer" and isinstance(value, int):
                info["cache"]["layer"] = value
        write_task_file(folder, info)  # resealed: a consistent folder whose content is wrong
    return damage


def _truncate(folder):
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    write_task_file(folder, json.loads((folder / TASK_FILE).read_text()))


def _empty(folder):
    (folder / "model.safetensors").write_bytes(b"")
    write_task_file(folder, json.loads((folder / TASK_FILE).read_text()))


def _pickle_only(folder):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Opens(folder.parent / "UNPICKLED")))


def _model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "no-such-model"
    (folder / "config.json").write_text(json.dumps(config))
    write_task_file(folder, json.loads((folder / TASK_FILE).read_text()))


def _mixed(folder):
    """New weights beside the old record (what a kill during the old, non-atomic save left)."""
    from safetensors.torch import load_file, save_file

    w = folder / "model.safetensors"
    state = load_file(str(w))
    state["classifier.weight"] = state["classifier.weight"] + 1.0
    save_file(state, str(w), metadata={"format": "pt"})


def _record_edited(folder):
    info = json.loads((folder / TASK_FILE).read_text())
    info["mode"] = "upper"
    (folder / TASK_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))


# (name, damage, what the message must name, what else it must say)
CASES = [
    ("truncated-safetensors", _truncate, "model.safetensors", "not a whole safetensors file"),
    ("empty-safetensors", _empty, "model.safetensors", "not a whole safetensors file"),
    ("pickle-only", _pickle_only, "pytorch_model.bin", "never loads pickle"),
    ("layer-99", _edit("layer", 99), TASK_FILE, "layer 99 is past the model's 4 layers"),
    ("layer-minus-1", _edit("layer", -1), TASK_FILE, "layer -1 is not a layer number"),
    ("layer-string", _edit("layer", "3"), TASK_FILE, "layer '3' is not a layer number"),
    ("no-cache", _edit("cache", drop=True), TASK_FILE, "no `cache` entry"),
    ("labels-not-list", _edit("labels", "neg,pos"), TASK_FILE, "labels must be a list"),
    ("unknown-model-type", _model_type, "config.json", "transformers cannot read it"),
    ("mixed-weights", _mixed, "model.safetensors", "sha256 differs"),
    ("record-edited", _record_edited, TASK_FILE, "checksum does not match"),
]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def damaged(request, good, tmp_path):
    name, damage, names, says = request.param
    folder = tmp_path / name
    shutil.copytree(good, folder)
    damage(folder)
    return folder, names, says


def _cli(*args, env_path=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "erpack", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_damaged_task_folder_is_refused_by_name(damaged, tiny, tmp_path, capsys):
    folder, names, says = damaged
    r = _cli("eval", folder, tiny["cache"], "--labels", tiny["labels"])
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("erpack eval: error: "), r.stderr
    assert names in r.stderr and says in r.stderr and "again" in r.stderr, r.stderr
    assert not (folder.parent / "UNPICKLED").exists(), "the pickle file was unpickled"
    for argv in (["inspect", str(folder)], ["export", str(folder), "-o", str(tmp_path / "m.onnx")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert names in err and says in err, (argv, err)
    assert not (tmp_path / "m.onnx").exists()
    assert not (folder.parent / "UNPICKLED").exists()


def test_a_sealed_folder_loads_and_lists_every_file(good):
    from erpack.train import TaskModel

    info = json.loads((good / TASK_FILE).read_text())
    assert info["version"] == 2
    assert set(info["files"]) == {p.name for p in good.iterdir() if p.is_file()} - {TASK_FILE}
    assert "model.safetensors" in info["files"] and "config.json" in info["files"]
    assert TaskModel.load(good).mode == "head"


def test_an_unlisted_file_is_refused(good, tmp_path):
    from erpack.errors import TaskModelError
    from erpack.train import TaskModel

    folder = tmp_path / "task"
    shutil.copytree(good, folder)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"x")
    with pytest.raises(TaskModelError, match="model-00002-of-00002.safetensors: not part of the task model"):
        TaskModel.load(folder)


def test_a_version_1_folder_still_loads_and_is_still_checked(good, tmp_path):
    """Folders written before the checksums (version 1) load; their fields and pickle files are still checked."""
    from erpack.errors import TaskModelError
    from erpack.train import TaskModel

    folder = tmp_path / "v1"
    shutil.copytree(good, folder)
    info = json.loads((folder / TASK_FILE).read_text())
    for key in ("files", "checksum"):
        info.pop(key)
    info["version"] = 1
    (folder / TASK_FILE).write_text(json.dumps(info))
    assert TaskModel.load(folder).layer == info["layer"]
    (folder / TASK_FILE).write_text(json.dumps(dict(info, layer="2")))
    with pytest.raises(TaskModelError, match="layer '2' is not a layer number"):
        TaskModel.load(folder)
