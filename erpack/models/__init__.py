"""Split a transformers encoder at layer k: the lower stack runs once, the upper stack many times.

Modules: layers (where an encoder keeps its layer list: found in the model, a table for the
exceptions and the refused), shared (ALBERT's groups over a virtual depth), loading (a model and its
identity), split (the two stacks), prunable / heads / ffn (where heads and neurons are, and cutting them out),
pruned (a pruned model's shapes, recorded in its config and rebuilt on load).
"""

from erpack.models.layers import ARCHITECTURES, REFUSED, Architecture, architecture_of, layer_list
from erpack.models.loading import LoadedModel, load_model, load_recorded, recorded_location, weights_sha256
from erpack.models.split import LowerStack, UpperStack, depth, split_model

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "LoadedModel",
    "LowerStack",
    "REFUSED",
    "UpperStack",
    "architecture_of",
    "depth",
    "layer_list",
    "load_model",
    "load_recorded",
    "recorded_location",
    "split_model",
    "weights_sha256",
]
