"""int8 variants of an exported graph: dynamic (weights int8, activations quantized per batch at run
time) and static (activation ranges calibrated once on cached records, QDQ format).

    quantize_dynamic_graph("m.onnx", "m.int8-dynamic.onnx")
    quantize_static_graph("m.onnx", "m.int8-static.onnx", CacheCalibration(reader, limit=256))

Dynamic needs no data and suits CPU serving; static needs calibration data. Its inputs are the cache
records themselves: the graph will only ever see decoded records, so they are the right calibration
distribution (BERT's residual stream has a few outlier channels that random inputs would miss).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from erpack.errors import ExportError
from erpack.export.inputs import cache_records, pad_batch

QUANTIZE_MODES = ("dynamic", "static")


def _quantization():
    try:
        from onnxruntime import quantization
    except ImportError:
        raise ExportError("onnxruntime.quantization is not available: pip install 'erpack[onnx]'") from None
    return quantization


@contextlib.contextmanager
def _quiet():
    """Silence the quantizer's advice to pre-process (logged at WARNING on the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic_graph(src, dst, per_channel: bool = True) -> dict:
    """Weights of MatMul/Gemm/Attention to int8 (QInt8); activations quantized at run time."""
    import onnx

    q = _quantization()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    # DefaultTensorType: fused operators of an optimized graph (com.microsoft domain) have no shape
    # inference, so the quantizer is told their outputs are float.
    with _quiet():
        q.quantize_dynamic(str(src), str(dst), weight_type=q.QuantType.QInt8, per_channel=per_channel,
                           extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"method": "dynamic", "weight_type": "int8", "per_channel": per_channel}


class CacheCalibration:
    """A CalibrationDataReader that feeds padded batches of decoded cache records.

    Records are taken evenly over the cache (or `ids`), grouped by length so batches carry little
    padding: only real tokens shape the activation ranges.
    """

    def __init__(self, reader, limit: int = 256, batch_size: int = 16, ids=None):
        records = cache_records(reader, limit, ids)
        if not records:
            raise ExportError(f"calibration cache {reader.path} holds no records; static quantization needs some")
        records.sort(key=len)
        self.batches = [pad_batch(records[i: i + batch_size]) for i in range(0, len(records), batch_size)]
        self.documents = len(records)
        self._next = 0

    def get_next(self) -> dict | None:
        if self._next >= len(self.batches):
            return None
        hidden, mask = self.batches[self._next]  # (B, T, H), (B, T)
        self._next += 1
        return {"hidden_states": hidden, "attention_mask": mask}

    def rewind(self) -> None:
        self._next = 0


def quantize_static_graph(src, dst, calibration: CacheCalibration, per_channel: bool = True,
                          method: str = "minmax") -> dict:
    """QDQ int8 (activations and weights QInt8) with ranges calibrated on `calibration`'s batches."""
    q = _quantization()
    methods = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
               "entropy": q.CalibrationMethod.Entropy}
    if method not in methods:
        raise ExportError(f"unknown calibration method {method!r}; use one of {', '.join(methods)}")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    calibration.rewind()
    # Quantize matrix products only: LayerNorm, Softmax and GELU stay float, where int8 costs accuracy.
    with _quiet():
        q.quantize_static(str(src), str(dst), calibration, quant_format=q.QuantFormat.QDQ,
                          op_types_to_quantize=["MatMul", "Gemm"], per_channel=per_channel,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=methods[method], extra_options={"ActivationSymmetric": False})
    return {"method": "static", "format": "QDQ", "weight_type": "int8", "activation_type": "int8",
            "per_channel": per_channel, "calibration": method, "calibration_documents": calibration.documents}


def file_size(path) -> int:
    return Path(path).stat().st_size

