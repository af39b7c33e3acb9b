"""Split a transformers encoder at layer k: the lower stack runs once, the upper stack many times.

Modules: layers (where each architecture keeps its layer list), loading (a model and its identity),
split (the two stacks), prunable / heads / ffn (where heads and neurons are, and cutting them out),
pruned (a pruned model's shapes, recorded in its config and rebuilt on load).
"""

from erpack.models.layers import ARCHITECTURES, Architecture, architecture_of
from erpack.models.loading import LoadedModel, load_model, load_recorded, recorded_location, weights_sha256
from erpack.models.split import LowerStack, UpperStack, split_model

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "LoadedModel",
    "LowerStack",
    "UpperStack",
    "architecture_of",
    "load_model",
    "load_recorded",
    "recorded_location",
    "split_model",
    "weights_sha256",
]
