"""A task model folder's own record, `erpack_task.json`: what it is, and the checksums that seal it.

Written last, after every other file of the folder, it holds (besides what the task model is) the
sha256 and size of every other file (`files`) and a sha256 of its own content (`checksum`). Reading
checks, before anything is loaded: no pickle file is in the folder (erpack never unpickles), the
JSON parses, format and version are known, each listed file is there with its size and sha256,
no unlisted file is, the record's own checksum holds, and its fields have the types and ranges a
task model needs. A damaged, mixed or altered folder is refused with a TaskModelError naming the
file. Version 1 folders (written before the checksums) are read without the file checks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from erpack.checksums import file_sha256
from erpack.errors import TaskModelError
from erpack.store.atomic import write_atomic
from erpack.train.labels import TASKS

TASK_FILE = "erpack_task.json"
TASK_FORMAT = "erpack-task"
TASK_VERSION = 2  # 2: `files` and `checksum` seal the folder; 1: no checksums
INPUTS = ("cache", "text")  # what the model computes from: cached layer-k states, or token ids (a baseline)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
RETRAIN = "train it again (erpack train ... -o FOLDER --overwrite)"


def file_entries(folder: Path) -> dict:
    """{name: {"sha256", "bytes"}} of every file directly in `folder` but the record itself."""
    return {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != TASK_FILE}


def record_checksum(info: dict) -> str:
    """sha256 of the record's canonical JSON without its `checksum` field."""
    body = {k: v for k, v in info.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_task_file(folder: Path, info: dict) -> dict:
    """Seal `folder`: write erpack_task.json with `info`, the checksums of the other files and its own."""
    sealed = dict(info, format=TASK_FORMAT, version=TASK_VERSION, files=file_entries(folder))
    sealed.pop("checksum", None)
    sealed = json.loads(json.dumps(sealed))  # the form a reader sees (tuples as lists)
    sealed["checksum"] = record_checksum(sealed)
    write_atomic(folder / TASK_FILE, (json.dumps(sealed, indent=2, sort_keys=True) + "\n").encode())
    return sealed


def refuse_pickle(folder: Path) -> None:
    """Refuse, by name and without opening it, any pickle-format weights file in the folder."""
    found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise TaskModelError(f"{folder / found[0]}: a pickle-format file; erpack never loads pickle (it can run "
                             f"code). Save the weights as model.safetensors (save_pretrained(..., "
                             f"safe_serialization=True)) and remove {', '.join(found)}, or {RETRAIN}")


def read_task_file(folder) -> dict:
    """The checked record of the task model in `folder` (see the module docstring for what is checked)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskModelError(f"{folder} is not a folder: give the folder `erpack train` wrote")
    refuse_pickle(folder)
    task_file = folder / TASK_FILE
    if not task_file.is_file():
        raise TaskModelError(f"{folder} is not an erpack task model (no {TASK_FILE}); train one with `erpack train`")
    try:
        info = json.loads(task_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskModelError(f"{task_file}: not valid JSON ({exc}); {RETRAIN}") from None
    if not isinstance(info, dict):
        raise TaskModelError(f"{task_file}: holds a JSON {type(info).__name__}, not an object; {RETRAIN}")
    version = info.get("version")
    if info.get("format") != TASK_FORMAT or not isinstance(version, int) or isinstance(version, bool):
        raise TaskModelError(f"{task_file}: format {info.get('format')!r} version {version!r} is not an erpack "
                             f"task model record; {RETRAIN}")
    if version > TASK_VERSION:
        raise TaskModelError(f"{task_file}: version {version} is newer than this erpack reads ({TASK_VERSION}); "
                             "upgrade erpack")
    if version >= 2:
        verify_files(folder, info)
    check_fields(info, task_file)
    return info


def verify_files(folder: Path, info: dict) -> None:
    """Each file the record lists is there, whole and unchanged; no other file is; the record is intact."""
    task_file = folder / TASK_FILE
    if info.get("checksum") != record_checksum(info):
        raise TaskModelError(f"{task_file}: its checksum does not match its content: the record was edited or "
                             f"damaged after it was written; {RETRAIN}")
    files = info.get("files")
    if not isinstance(files, dict):
        raise TaskModelError(f"{task_file}: no `files` checksums; {RETRAIN}")
    for name, want in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise TaskModelError(f"{path}: missing (the task model lists it); {RETRAIN}")
        size = path.stat().st_size
        if size != want.get("bytes"):
            raise TaskModelError(f"{path}: {size} bytes where {TASK_FILE} records {want.get('bytes')}: the file is "
                                 f"truncated, replaced or from another run; {RETRAIN}")
        if file_sha256(path) != want.get("sha256"):
            raise TaskModelError(f"{path}: sha256 differs from the one {TASK_FILE} records: the file was changed "
                                 f"or comes from another run; {RETRAIN}")
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != TASK_FILE and p.name not in files)
    if extra:
        raise TaskModelError(f"{folder / extra[0]}: not part of the task model ({TASK_FILE} does not list it): the "
                             f"folder was mixed with another; remove {', '.join(extra)}, or {RETRAIN}")


def _bad(task_file: Path, what: str) -> TaskModelError:
    return TaskModelError(f"{task_file}: {what}; {RETRAIN}")


def check_fields(info: dict, task_file: Path) -> None:
    """The record's fields have the types and values a task model needs."""
    if info.get("task") not in TASKS:
        raise _bad(task_file, f"task {info.get('task')!r} is not one of {', '.join(TASKS)}")
    labels = info.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise _bad(task_file, f"labels must be a list of label names, not {labels!r:.60}")
    if info["task"] != "regression" and len(labels) < 2:
        raise _bad(task_file, f"a {info['task']} model needs two or more labels, not {labels!r}")
    if info["task"] == "token-classification" and info.get("subwords") not in ("first", "all"):
        raise _bad(task_file, f"subwords {info.get('subwords')!r} is not first or all (which subwords carry a word's label)")
    layer = info.get("layer")
    if not isinstance(layer, int) or isinstance(layer, bool) or layer < 0:
        raise _bad(task_file, f"layer {layer!r} is not a layer number (an integer 0 or more)")
    if not isinstance(info.get("mode"), str):
        raise _bad(task_file, f"mode {info.get('mode')!r} is not a mode name")
    if info.get("input", "cache") not in INPUTS:
        raise _bad(task_file, f"input {info.get('input')!r} is not one of {', '.join(INPUTS)}")
    cache = info.get("cache")
    if not isinstance(cache, dict) or not isinstance(cache.get("model"), dict):
        raise _bad(task_file, "no `cache` entry (the encoder, layer and codec the model expects)")
    if cache.get("layer") != layer:
        raise _bad(task_file, f"cache layer {cache.get('layer')!r} differs from the model's layer {layer}")


def check_layer(info: dict, num_layers: int, folder: Path) -> None:
    """The recorded layer exists in the saved model (0..L)."""
    if info["layer"] > num_layers:
        raise _bad(folder / TASK_FILE, f"layer {info['layer']} is past the model's {num_layers} layers "
                   f"(config.json)")
