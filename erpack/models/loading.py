"""Load an encoder (built-in name, local folder or hub id) with its tokenizer and identity.

The identity that a cache and a task model record is the model's name, type, shape, and a sha256
over the base encoder's weights (tensor names, dtypes, shapes and bytes in a fixed order), so a
cache made by a different checkpoint is recognised whatever folder or file it was loaded from. A
model loaded from a local folder is named by the folder's name, and the folder's absolute path is
kept only as a hint (`path`): `load_recorded` looks there, and when the folder has moved it asks
for `--model FOLDER` and checks that folder's weights against the recorded sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from erpack.assets import resolve_model
from erpack.errors import AssetError, ManifestMismatchError
from erpack.models.layers import architecture_of


def weights_sha256(model: nn.Module) -> str:
    """sha256 of the base encoder's state (a task head, trained or random, does not count)."""
    base = getattr(model, "base_model", model)
    h = hashlib.sha256()
    for name, tensor in sorted(base.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    name: str  # what the user asked for (built-in name, folder or hub id)
    path: str  # where it was loaded from
    _sha256: str | None = field(default=None, repr=False)
    local: bool = False  # loaded from a local folder (not a built-in name or a hub id)

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers if hasattr(self.model.config, "num_hidden_layers") else (
            self.model.config.n_layers
        )

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "hidden_size", None) or cfg.dim

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = weights_sha256(self.model)
        return self._sha256

    def identity(self) -> dict:
        """What a cache or task model records about the encoder that made it."""
        ident = {
            "name": self.name,
            "model_type": self.config.model_type,
            "weights_sha256": self.sha256,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
        }
        if self.local:  # the folder's name identifies it to a reader; where it lies is only a hint
            folder = Path(self.path).expanduser().resolve()
            ident.update(name=folder.name, path=str(folder))
        return ident


def load_model(
    name_or_path: str = "minilm",
    num_labels: int | None = None,
    trust_remote_code: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load an encoder in eval mode; with `num_labels`, a sequence-classification model (new head)."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise AssetError(
            f"cannot load model {name_or_path!r}: it is not a built-in name (minilm, mpnet), not a local folder, "
            f"and no hub answered for it ({str(exc).splitlines()[0]})"
        ) from None
    architecture_of(config.model_type)  # refuse unsupported architectures before loading weights
    if num_labels is None:
        model = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, trust_remote_code=trust_remote_code
        )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model.to(device).eval()
    local = path == str(Path(name_or_path).expanduser()) and Path(path).is_dir()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path, path=path, local=local)


def recorded_location(identity: dict) -> str:
    """Where to load the encoder a cache or task model recorded: its folder hint, else its name (a
    built-in name, a hub id, or the folder an erpack before the hint recorded as the name)."""
    return identity.get("path") or identity["name"]


def _moved(identity: dict) -> str | None:
    """The recorded folder when it no longer exists (a hint, or an older cache's name that is a path:
    absolute, from ~ or ., or deeper than a hub id's owner/name)."""
    where = identity.get("path") or identity["name"]
    looks_like_folder = ("path" in identity or where.startswith(("/", ".", "~")) or where.count("/") > 1
                         or "\\" in where)
    if looks_like_folder and not Path(where).expanduser().exists():
        return where
    return None


def load_recorded(identity: dict, override: str | None = None, what: str = "the cache",
                  device: str | torch.device = "cpu") -> LoadedModel:
    """The encoder `identity` (a cache's or task model's `model` record) was made with, loaded from
    `override` (the user's --model) or the recorded location; its weights must match the recorded
    sha256 (ManifestMismatchError). A recorded folder that has moved is an AssetError asking for
    --model FOLDER."""
    sha = identity.get("weights_sha256")
    who = f"{identity.get('name')} ({identity.get('model_type')}, weights sha256 {sha})"
    if override is None and (moved := _moved(identity)):
        raise AssetError(f"{what} was made with the model folder {moved}, which no longer exists; pass "
                         f"--model FOLDER with the encoder it was made with: {who}")
    name = override or recorded_location(identity)
    loaded = load_model(name, device=device)
    if sha and loaded.sha256 != sha:
        raise ManifestMismatchError(
            f"model {name!r} has weights sha256 {loaded.sha256[:16]}..., but {what} was made with "
            f"{sha[:16]}... ({identity.get('name')}); pass --model with the encoder {what} was made with, "
            "or encode the corpus again with this model")
    return loaded
