"""A trained task model on disk, and the one object later steps (eval, pruning, export) load.

Folder layout (`TaskModel.save(out)`):

    out/config.json, out/model.safetensors   the whole transformers model, `save_pretrained` style
                                             (adapters merged into the weights; lower layers unchanged)
    out/erpack_task.json                     what it is and which cache it expects (see TASK_FILE_FIELDS)

    tm = TaskModel.load(out)          # AutoModelForSequenceClassification + split at the recorded layer
    logits = tm.upper(hidden, mask)   # (B, T, H) float, (B, T) -> (B, C); regression: C = 1
    notes = tm.check_cache(reader)    # ManifestMismatchError if model weights, layer, hidden size or
                                      # tokenizer differ; codec / max_length differences come back as notes
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from erpack.errors import InputError, ManifestMismatchError

TASK_FILE = "erpack_task.json"
TASK_FORMAT = "erpack-task"
TASK_VERSION = 1
# erpack_task.json: format, version, task, labels, mode, adapter, layer,
# cache {model (identity incl. weights_sha256), layer, max_length, tokenizer, codec}, training (summary)


class TaskModel:
    """A task model that runs from a cache's layer-k hidden states."""

    def __init__(self, model: nn.Module, info: dict):
        from erpack.models import split_model

        self.model = model
        self.info = info
        self.lower, self.upper = split_model(model, info["layer"])

    # ---- what it is ----------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def layer(self) -> int:
        return int(self.info["layer"])

    @property
    def mode(self) -> str:
        return self.info["mode"]

    @property
    def expected_cache(self) -> dict:
        return self.info["cache"]

    # ---- running -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) for hidden (B, T, H) and mask (B, T), in eval mode."""
        self.model.eval()
        return self.upper(hidden, mask)

    def to(self, device) -> TaskModel:
        self.model.to(device)
        return self

    # ---- the cache it runs on ----------------------------------------------------------------------
    def check_cache(self, reader) -> list[str]:
        """Refuse a cache from another encoder, layer or tokenizer; return notes on allowed differences.

        The codec may differ (a decoded record is the same representation, up to quantization error)
        and so may max_length (only truncation differs); both come back as notes for the summary.
        """
        want = self.expected_cache
        meta = reader.meta
        problems = []
        for key in ("weights_sha256", "hidden_size", "model_type"):
            if meta["model"].get(key) != want["model"].get(key):
                problems.append(f"model {key} {str(meta['model'].get(key))[:16]} (task model expects "
                                f"{str(want['model'].get(key))[:16]})")
        if meta.get("layer") != want["layer"]:
            problems.append(f"layer {meta.get('layer')} (task model expects {want['layer']})")
        if want.get("tokenizer") and meta.get("tokenizer") and meta["tokenizer"] != want["tokenizer"]:
            problems.append(f"tokenizer {meta['tokenizer']} (task model expects {want['tokenizer']})")
        if problems:
            raise ManifestMismatchError(
                f"cache {reader.path} does not fit task model ({want['model'].get('name')} layer {want['layer']}): "
                + "; ".join(problems) + ". Encode the corpus with the task model's encoder and layer "
                f"(erpack encode CORPUS -o CACHE --model {want['model'].get('name')} --layer {want['layer']})"
            )
        notes = []
        if want.get("codec") and reader.manifest["codec"] != want["codec"]:
            notes.append(f"codec {reader.codec.spec} differs from the training cache's; decoded values are the "
                         "same representation up to quantization error")
        if want.get("max_length") and meta.get("max_length") != want["max_length"]:
            notes.append(f"max_length {meta.get('max_length')} differs from the training cache's {want['max_length']}")
        return notes

    # ---- disk ------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        info = dict(self.info, format=TASK_FORMAT, version=TASK_VERSION)
        (out / TASK_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> TaskModel:
        from transformers import AutoModelForSequenceClassification

        folder = Path(path)
        task_file = folder / TASK_FILE
        if not task_file.is_file():
            raise InputError(f"{folder} is not an erpack task model (no {TASK_FILE}); train one with `erpack train`")
        try:
            info = json.loads(task_file.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{task_file}: malformed JSON ({exc.msg}); train the model again") from None
        if info.get("format") != TASK_FORMAT or info.get("version", 0) > TASK_VERSION:
            raise InputError(f"{task_file}: format {info.get('format')!r} version {info.get('version')!r} is not "
                             f"one this erpack reads ({TASK_FORMAT} <= {TASK_VERSION}); upgrade erpack")
        from erpack.prune.structure import is_pruned, load_pruned_model

        if is_pruned(folder):  # heads and neurons cut out: rebuild the smaller shapes first
            model = load_pruned_model(folder, device)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(folder)
        model.to(device).eval()
        return cls(model, info)

    def __repr__(self) -> str:
        return (f"TaskModel(task={self.task!r}, mode={self.mode!r}, layer={self.layer}, "
                f"labels={len(self.labels)}, model={self.expected_cache['model'].get('name')!r})")
