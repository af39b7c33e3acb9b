"""Lazy access to bitsandbytes (the `quant` extra): imported on first use, never at erpack import.

bitsandbytes 0.50 logs "Failed to load CPU gemm_4bit_forward from kernels-community: No module named
'kernels'" through its `bitsandbytes.backends.cpu.ops` logger when it is first imported on a CPU
with AVX-512 bf16 (by erpack's codecs, or by peft, which imports it whenever it is installed). That
kernel serves 4-bit matmuls, which erpack never runs, so the line only reads like a broken install:
the filter below drops exactly that message, installed when erpack's codecs are imported, before
anything imports bitsandbytes. Every other bitsandbytes message still shows.
"""

from __future__ import annotations

import contextlib
import logging

from erpack.errors import CodecError

NOISE = "Failed to load CPU gemm_4bit_forward from kernels-community"
LOGGER = "bitsandbytes.backends.cpu.ops"


class DropKernelsNotice(logging.Filter):
    """Drops bitsandbytes' notice that the optional `kernels` package is missing; passes the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return NOISE not in str(record.msg) and NOISE not in str(record.args)


def quiet_bitsandbytes() -> None:
    """Install the filter on bitsandbytes' CPU-backend logger (once; the logger need not exist yet)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, DropKernelsNotice) for f in logger.filters):
        logger.addFilter(DropKernelsNotice())


quiet_bitsandbytes()


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


def version() -> str:
    """The installed bitsandbytes version, or 'not installed'."""
    try:
        import bitsandbytes
    except ImportError:
        return "not installed"
    return str(getattr(bitsandbytes, "__version__", "unknown"))


def eager(torch):
    """A context in which bitsandbytes' torch.compile'd fallbacks run eagerly: its CPU dequantize_4bit
    falls back to a function compiled anew for every record length (seconds each, then a warning)."""
    stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
    return stance("force_eager") if stance is not None else contextlib.nullcontext()

