"""Device choice for PyTorch: `auto` (or None) is CUDA when present, else the CPU.

onnxruntime sessions choose their providers in erpack.export.session (read back, never assumed).
"""

from __future__ import annotations


def resolve_device(device=None):
    """torch.device for "auto"/None (CUDA when available, else CPU), or for a name such as "cpu", "cuda:1"."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
