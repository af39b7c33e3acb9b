"""ONNX export of the recycled upper stack (and the lower one), checked against PyTorch, optimized and
quantized; sessions that say which execution provider runs them.

    from erpack.export import export_task_model, create_session, read_metadata, check_cache
    s = export_task_model("models/rt", "rt.onnx", quantize="dynamic", calibration_cache="caches/rt")
    sess = create_session("rt.int8-dynamic.onnx")          # CUDA when present, else CPU; sess.providers
    info = read_metadata(sess.session)                     # the cache the graph expects
    check_cache(info, CacheReader("caches/rt"))            # GraphCacheMismatchError if it is another cache

Modules: onnx_export (torch.onnx, dynamic axes, metadata), metadata (what a graph records, and
erpack.fit's cache check over it), parity (ORT against PyTorch), optimize (onnxruntime transformer
fusions), quantize (dynamic and static int8, calibration from cached records), session (providers),
inputs (padded batches), summary (ExportSummary and Variant, what an export returns), build (the whole `erpack export`; timing from erpack.runtime.timing).
Serving: erpack.predict; deployment bundles (both graphs, tokenizer, checksummed, run without torch): erpack.deploy.
Needs the `onnx` extra (onnx, onnxscript, onnxruntime). See docs/export.md.
"""

from erpack.export.build import PARTS, export_task_model, merge_adapters
from erpack.export.inputs import pad_batch
from erpack.export.metadata import check_cache, read_metadata
from erpack.export.onnx_export import export_lower, export_upper
from erpack.export.parity import TOLERANCE, ParityReport, graph_agreement, lower_parity, upper_parity
from erpack.export.session import Session, create_session
from erpack.export.summary import ExportSummary, Variant

__all__ = ["PARTS", "TOLERANCE", "ExportSummary", "ParityReport", "Session", "Variant", "check_cache", "create_session", "export_lower",
           "export_task_model", "export_upper", "graph_agreement", "lower_parity", "merge_adapters", "pad_batch",
           "read_metadata", "upper_parity"]
