"""Lazy access to bitsandbytes (the `quant` extra): imported on first use, never at erpack import."""

from __future__ import annotations

from erpack.errors import CodecError


def functional():
    """bitsandbytes.functional and torch, or a CodecError naming the extra to install."""
    try:
        import bitsandbytes.functional as F
        import torch
    except ImportError as exc:
        raise CodecError(
            f"the bitsandbytes codecs need bitsandbytes ({exc}); install it with: pip install 'erpack[quant]'"
        ) from None
    return F, torch
