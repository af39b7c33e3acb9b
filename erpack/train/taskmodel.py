"""A trained task model on disk, and the one object later steps (eval, pruning, export) load.

Folder layout (`TaskModel.save(out)`):

    out/config.json, out/model.safetensors   the whole transformers model, `save_pretrained` style
                                             (adapters merged into the weights; lower layers unchanged)
    out/erpack_task.json                     what it is, which cache it expects, and the sha256 of every
                                             other file (written last: erpack.train.taskfolder)
    out/baseline/                            with `erpack train --baseline`: the baseline, a task model
                                             folder of its own that computes from text (input "text")

    tm = TaskModel.load(out)          # AutoModelForSequenceClassification (token task: ...ForTokenClassification)
                                      # + split at the recorded layer
    logits = tm.upper(hidden, mask)   # (B, T, H) float, (B, T) -> (B, C); regression: C = 1; token task: (B, T, C)
    notes = tm.check_cache(reader)    # ManifestMismatchError if model weights, layer, hidden size or
                                      # tokenizer differ; codec / max_length differences come back as notes
                                      # (the rule: erpack.fit)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from erpack.errors import ErpackError, TaskModelError
from erpack.fit import check_fit
from erpack.models.pruned import RECORD, load_pruned_model
from erpack.store.atomic import atomic_folder
from erpack.train.taskfolder import RETRAIN, check_layer, read_task_file, write_task_file

__all__ = ["TaskModel"]
# erpack_task.json: format, version, task, labels, mode, adapter, layer, input (cache | text),
# cache {model (identity incl. weights_sha256), layer, max_length, tokenizer, codec}, training (summary),
# files {name: sha256, bytes}, checksum (erpack.train.taskfolder)


class TaskModel:
    """A task model that runs from a cache's layer-k hidden states."""

    def __init__(self, model: nn.Module, info: dict, tokenizer=None):
        from erpack.models import split_model

        self.model = model
        self.info = info
        self.tokenizer = tokenizer  # set for a model that computes from text (input "text": a baseline)
        self.path: Path | None = None  # the folder it was loaded from (TaskModel.load), for messages
        self.writers: list[Callable[[Path], None]] = []  # more files `write` puts in the folder (exits.safetensors)
        self.lower, self.upper = split_model(model, info["layer"])

    # ---- what it is ----------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def subwords(self) -> str | None:
        """A token task's subwords rule ("first" or "all": erpack.words); None for other tasks."""
        return self.info.get("subwords")

    @property
    def layer(self) -> int:
        return int(self.info["layer"])

    @property
    def mode(self) -> str:
        return self.info["mode"]

    @property
    def input(self) -> str:
        """"cache": runs from a cache's layer-k states; "text": from token ids (a baseline, every layer tuned)."""
        return self.info.get("input", "cache")

    @property
    def expected_cache(self) -> dict:
        return self.info["cache"]

    # ---- running -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) (a token task: (B, T, C)) for hidden (B, T, H) and mask (B, T), in eval mode."""
        self.model.eval()
        return self.upper(hidden, mask)

    def to(self, device) -> TaskModel:
        self.model.to(device)
        return self

    # ---- the cache it runs on ----------------------------------------------------------------------
    def check_cache(self, reader) -> list[str]:
        """Refuse a cache from another encoder, layer or tokenizer (ManifestMismatchError); return notes on
        allowed differences: the codec (the same representation up to quantization error) and max_length.
        The rule is erpack.fit.check_fit's."""
        return check_fit(self.expected_cache, reader, f"task model {self.path}" if self.path else "the task model")

    # ---- disk ------------------------------------------------------------------------------------
    def write(self, folder, extra: Callable[[Path], None] | None = None) -> Path:
        """Write the model into `folder` (and, with `extra`, more files), then seal it with erpack_task.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, safe_serialization=True)
        if self.tokenizer is not None:  # a model that computes from text carries its tokenizer
            self.tokenizer.save_pretrained(folder)
        for writer in self.writers:
            writer(folder)
        if extra is not None:
            extra(folder)
        self.info = write_task_file(folder, self.info)
        return folder

    def save(self, path, overwrite: bool = False, extra: Callable[[Path], None] | None = None,
             notes: list | None = None) -> Path:
        """Write the task model folder atomically (erpack.store.atomic.atomic_folder): after a kill at any
        point `path` is the old model or the new one. An existing folder is replaced only with overwrite.
        What was cleaned up after an earlier killed write is appended to `notes`."""
        with atomic_folder(path, overwrite, what="task model", notes=notes) as tmp:
            self.write(tmp, extra)
        return Path(path)

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> TaskModel:
        """The task model in `path`, checked before loading (TaskModelError names what is wrong)."""
        folder = Path(path)
        info, config = check_folder(folder)
        try:
            from erpack.train.modes import task_model_class

            auto = task_model_class(info["task"])
            if getattr(config, RECORD, None) is not None:  # heads and neurons cut out: rebuild the smaller shapes
                model = load_pruned_model(folder, device, config, auto)
            else:
                model = auto.from_pretrained(folder, config=config, use_safetensors=True)
        except ErpackError:
            raise
        except Exception as exc:  # transformers' and safetensors' errors, on a folder that passed the checks
            raise TaskModelError(f"{folder}: the model does not load ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}); {RETRAIN}") from None
        model.to(device).eval()
        tokenizer = _load_tokenizer(folder) if info.get("input") == "text" else None
        tm = cls(model, info, tokenizer)
        tm.path = folder
        return tm

    def __repr__(self) -> str:
        return (f"TaskModel(task={self.task!r}, mode={self.mode!r}, layer={self.layer}, "
                f"labels={len(self.labels)}, model={self.expected_cache['model'].get('name')!r})")


def check_folder(folder) -> tuple[dict, object]:
    """Check a task model folder without loading its weights: (record, transformers config).

    Checksums and fields of erpack_task.json (erpack.train.taskfolder), config.json readable with
    the recorded layer inside the model, safetensors weights whole. TaskModelError names the file.
    """
    folder = Path(folder)
    info = read_task_file(folder)
    config = _read_config(folder, info)
    _check_weights(folder)
    return info, config


def expected_cache_of(reader) -> dict:
    """What a task model trained on `reader`'s cache records as the cache it expects."""
    meta = reader.meta
    return {"model": meta["model"], "layer": meta["layer"], "max_length": meta.get("max_length"),
            "tokenizer": meta.get("tokenizer"), "codec": reader.manifest["codec"], "codec_spec": reader.codec.spec}


def _read_config(folder: Path, info: dict):
    """config.json, read by transformers; its model type known and the recorded layer inside the model."""
    from transformers import AutoConfig

    path = folder / "config.json"
    if not path.is_file():
        raise TaskModelError(f"{path}: missing (the model's architecture); {RETRAIN}")
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as exc:  # ValueError for an unknown model_type, OSError / JSONDecodeError for a bad file
        raise TaskModelError(f"{path}: transformers cannot read it ({str(exc).splitlines()[0][:200]}); "
                             f"{RETRAIN}") from None
    record = getattr(config, RECORD, None)
    layers = record["num_hidden_layers"] if isinstance(record, dict) and "num_hidden_layers" in record else \
        getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    if isinstance(layers, int):
        check_layer(info, layers, folder)
    return config


def _check_weights(folder: Path) -> None:
    """The folder holds safetensors weights whose header and size are whole."""
    from safetensors import safe_open

    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise TaskModelError(f"{folder}: no model.safetensors (the weights); {RETRAIN}")
    for f in files:
        try:
            with safe_open(str(f), framework="pt"):
                pass
        except Exception as exc:  # SafetensorError: truncated, empty or not safetensors
            raise TaskModelError(f"{f}: not a whole safetensors file ({str(exc).splitlines()[0][:160]}); "
                                 f"{RETRAIN}") from None


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as exc:
        raise TaskModelError(f"{folder}: its tokenizer does not load ({str(exc).splitlines()[0][:160]}); "
                             f"{RETRAIN}") from None
