"""Load an encoder (built-in name, local folder or hub id) with its tokenizer and identity.

The identity that a cache and a task model record is the model's name, type, shape, and a sha256
over the base encoder's weights (tensor names, dtypes, shapes and bytes in a fixed order), so a
cache made by a different checkpoint is recognised whatever folder or file it was loaded from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from erpack.assets import resolve_model
from erpack.errors import AssetError
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
        return {
            "name": self.name,
            "model_type": self.config.model_type,
            "weights_sha256": self.sha256,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
        }


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
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path, path=path)
