"""Split a transformers encoder at layer k: the lower stack runs once, the upper stack many times."""

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
