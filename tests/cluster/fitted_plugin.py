"""Registers the test-only fitted codec at import: what ERPACK_CODEC_MODULES names for Ray workers."""

from erpack.codecs import registry
from tests.store.fitted import CODEC_ID, TokenMean

registry._REGISTRY.setdefault(CODEC_ID, TokenMean)
