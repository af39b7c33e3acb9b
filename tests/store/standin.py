"""A stand-in for erpack.codecs.Pipeline (same methods), used only until erpack/codecs lands."""

from __future__ import annotations

import numpy as np

from erpack.errors import CodecError


class StandInPipeline:
    def __init__(self, spec: str):
        if spec not in ("fp32", "fp16"):
            raise CodecError(f"stand-in knows fp32 and fp16, not {spec!r}")
        self.spec = spec
        self._dtype = np.dtype("<f4" if spec == "fp32" else "<f2")

    @classmethod
    def from_spec(cls, spec: str):
        return cls(spec)

    @classmethod
    def from_config(cls, config: dict):
        return cls(config["spec"])

    def get_config(self) -> dict:
        return {"id": "pipeline", "spec": self.spec}

    def encode(self, x: np.ndarray) -> bytes:
        return np.ascontiguousarray(x, dtype=self._dtype).tobytes()

    def decode(self, buf, shape) -> np.ndarray:
        n = int(np.prod(shape))
        if len(buf) != n * self._dtype.itemsize:
            raise CodecError(f"{len(buf)} bytes do not hold {shape} {self._dtype}")
        return np.frombuffer(buf, dtype=self._dtype).astype(np.float32).reshape(shape)
