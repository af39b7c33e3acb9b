"""Where each supported architecture keeps its layer list: the one table a new encoder is added to.

An entry names, relative to the base model (e.g. `BertModel`): the module that runs the layers
(`encoder`), the attribute holding the `nn.ModuleList` of layers inside it (`layer`), modules of the
base model that act on embeddings and must not run again in the upper stack (ELECTRA's
`embeddings_project`), and modules of the encoder applied after its first layer only (DeBERTa-v2's
`conv`), which belong to the lower stack once k >= 1.

Everything else (attention masks, MPNet's relative position bias, DeBERTa's relative embeddings) is
computed by the model's own code, which is what makes one split fit them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from erpack.errors import UnsupportedModelError


@dataclass(frozen=True)
class Architecture:
    encoder: str = "encoder"
    layers: str = "layer"
    embedding_modules: tuple[str, ...] = ()
    first_layer_modules: tuple[str, ...] = ()


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(),
    "roberta": Architecture(),
    "xlm-roberta": Architecture(),
    "camembert": Architecture(),
    "electra": Architecture(embedding_modules=("embeddings_project",)),
    "distilbert": Architecture(encoder="transformer"),
    "deberta": Architecture(),
    "deberta-v2": Architecture(first_layer_modules=("conv",)),
    "mpnet": Architecture(),
}


def architecture_of(model_type: str) -> Architecture:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}. "
            "An encoder whose layers form an nn.ModuleList is added with one line in erpack/models/layers.py."
        ) from None
