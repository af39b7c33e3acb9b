"""Where the prunable parts of a layer are, per architecture: the one table a new encoder is added to.

Per `model_type`, paths relative to one layer of the encoder's layer list:
- `attention`: the self-attention module whose q/k/v project into heads (it owns the head count);
- `q`, `k`, `v`: its three input projections (attributes of `attention`): heads are row blocks;
- `out`: the attention output projection: heads are column blocks of its weight (the head gate
  sits on its input);
- `up`, `down`: the feed-forward projections: neurons are rows of `up`, columns of `down` (the
  neuron gate sits on the input of `down`, after the activation).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from erpack.errors import UnsupportedModelError
from erpack.models.layers import layer_list, layer_list_name  # noqa: F401 - their home, re-exported


@dataclass(frozen=True)
class PrunePaths:
    attention: str = "attention.self"
    q: str = "query"
    k: str = "key"
    v: str = "value"
    out: str = "attention.output.dense"
    up: str = "intermediate.dense"
    down: str = "output.dense"
    position_bias: bool = False  # the encoder passes a per-head bias (B, heads, T, T) to every layer


_BERT = PrunePaths()
PRUNABLE: dict[str, PrunePaths] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "camembert": _BERT,
    "electra": _BERT,
    "mpnet": PrunePaths(attention="attention.attn", q="q", k="k", v="v", out="attention.attn.o", position_bias=True),
}


def paths_of(model_type: str) -> PrunePaths:
    try:
        return PRUNABLE[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"pruning does not support model_type {model_type!r}; supported: {', '.join(sorted(PRUNABLE))}. "
            "Another encoder is added with one entry in erpack/models/prunable.py naming its q/k/v, attention output "
            "and feed-forward projections"
        ) from None


def head_size(model: nn.Module) -> int:
    return model.config.hidden_size // model.config.num_attention_heads
