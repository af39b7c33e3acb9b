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
import os
from pathlib import Path

import numpy as np

from erpack.errors import ExportError
from erpack.export.inputs import cache_records, pad_batch, real_rows

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


def weight_sources(graph) -> dict[str, str]:
    """{MatMul/Gemm node: the initializer its weight (second input) is}, read directly or through Identity
    nodes: the exporter writes a weight used several times (a shared block unrolled over S steps, ALBERT's
    shared layers) as the initializer at its first use and an Identity of it at the others."""
    inits = {i.name for i in graph.initializer}
    identity = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    out = {}
    for n in graph.node:
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1:
            w, seen = n.input[1], set()
            while w in identity and w not in inits and w not in seen:
                seen.add(w)
                w = identity[w]
            if w in inits:
                out[n.name] = w
    return out


def _read_weights_directly(model) -> int:
    """Rewire every MatMul/Gemm that reads an initializer through Identity nodes to read it directly (the
    quantizer quantizes only weights it sees as initializers, so those uses stayed float); returns how many."""
    sources = weight_sources(model.graph)
    n = 0
    for node in model.graph.node:
        if node.name in sources and node.input[1] != sources[node.name]:
            node.input[1] = sources[node.name]
            n += 1
    while n:  # Identity nodes nothing reads any more would keep the float weights in the int8 graph
        used = {x for node in model.graph.node for x in node.input} | {o.name for o in model.graph.output}
        dead = [node for node in model.graph.node if node.op_type == "Identity" and node.output[0] not in used]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    return n


def quantize_dynamic_graph(src, dst, per_channel: bool = True, reduce_range: bool = True,
                           exclude=None) -> dict:
    """Weights of MatMul/Gemm/Attention to int8 (QInt8); activations quantized at run time.

    reduce_range: 7-bit weights. onnxruntime's U8S8 kernels on AVX2/AVX-512 without VNNI add pairs of
    uint8 x int8 products in int16 and saturate when activations sit far from their zero point (an
    outlier channel pushes the zero point to one end of the range): MPNet k=6 lost 40 points to that.
    exclude: node names left in float (see `sensitive_nodes`). A weight read through Identity nodes (a
    shared block's later uses) is rewired to its initializer first, so every use of it is quantized alike
    ("rewired" in the details: how many uses).
    """
    import onnx

    q = _quantization()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    exclude = list(exclude or [])
    model = onnx.load(str(src))
    rewired = _read_weights_directly(model)
    source = Path(src)
    if rewired:
        source = Path(dst).with_name(f".{Path(dst).stem}.rewired-{os.getpid()}.onnx")
        onnx.save(model, str(source))
    # DefaultTensorType: fused operators of an optimized graph (com.microsoft domain) have no shape
    # inference, so the quantizer is told their outputs are float.
    try:
        with _quiet():
            q.quantize_dynamic(str(source), str(dst), weight_type=q.QuantType.QInt8, per_channel=per_channel,
                               reduce_range=reduce_range, nodes_to_exclude=exclude,
                               extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        if rewired:
            source.unlink(missing_ok=True)
    return {"method": "dynamic", "weight_type": "int8", "per_channel": per_channel, "reduce_range": reduce_range,
            "excluded": exclude, "rewired": rewired}


def _feeds(batch) -> dict:
    """A batch as graph feeds: a dict of inputs as is, or an upper stack's (hidden, mask) pair."""
    if isinstance(batch, dict):
        return batch
    hidden, mask = batch
    return {"hidden_states": hidden, "attention_mask": mask}


def outlier_ratios(src, batches) -> list[tuple[str, float]]:
    """(node, max|x| / std(x)) for the activation input of every weight MatMul/Gemm, largest first.

    Measured on real tokens of `batches`: (hidden, mask) pairs of decoded cache records for an upper
    stack, or feed dicts with an `attention_mask` for any graph (a whole model's token ids). A large
    ratio means a few outlier channels take the whole per-tensor int8 range of a dynamically quantized
    activation and the ordinary values get a handful of levels (Bondarenko et al. 2021; MPNet's FFN
    output projections reach 100-170).
    """
    import onnx

    from erpack.export.session import create_session

    m = onnx.load(str(src))
    weights = weight_sources(m.graph)
    nodes = [(nd.name, nd.input[0]) for nd in m.graph.node if nd.name in weights]
    graph_inputs = {i.name for i in m.graph.input}
    outputs = {o.name for o in m.graph.output}
    wanted = sorted({x for _, x in nodes if x not in graph_inputs})
    for name in wanted:
        if name not in outputs:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    probe = Path(src).with_name(f".{Path(src).stem}.probe-{os.getpid()}.onnx")
    try:
        onnx.save(m, str(probe))
        sess = create_session(probe, "cpu").session
        stats = {name: [0.0, 0.0, 0.0, 0] for name in wanted + sorted(graph_inputs & {x for _, x in nodes})}
        for batch in batches:
            feeds = _feeds(batch)
            mask = feeds["attention_mask"]
            values = dict(zip(wanted, sess.run(wanted, feeds))) if wanted else {}
            values.update({k: v for k, v in feeds.items() if k in stats})
            real = mask.astype(bool)
            for name, v in values.items():
                v = v[real] if v.ndim == 3 and v.shape[:2] == mask.shape else v
                v = v.astype(np.float64)
                st = stats[name]
                st[0] = max(st[0], float(np.abs(v).max()))
                st[1] += float(v.sum())
                st[2] += float((v * v).sum())
                st[3] += v.size
    finally:
        probe.unlink(missing_ok=True)
    ratios = []
    for node, x in nodes:
        mx, s1, s2, n = stats[x]
        std = (max(s2 / n - (s1 / n) ** 2, 0.0)) ** 0.5 if n else 0.0
        ratios.append((node, mx / std if std > 0 else 0.0))
    return sorted(ratios, key=lambda t: -t[1])


def sensitive_nodes(src, dst, batches, target: float = 0.99, max_excluded: float = 0.25,
                    per_channel: bool = True, reduce_range: bool = True, output: str | None = None) -> dict:
    """Quantize `src` dynamically to `dst`, leaving in float the fewest outlier-fed weights needed.

    The weight MatMuls are ranked by the outlier ratio of their input activation (`outlier_ratios`)
    on `batches` (cached records, or feed dicts of any graph whose output `output`, default the first, is
    the logits; a token task's (B, T, C) logits count per real token), and grouped by the weight they
    read: a weight used several times (a shared block unrolled over S steps) is float at every use or
    int8 at every use, ranked by its worst use. All are quantized; while the int8 graph's argmax agrees
    with the fp32 graph's on fewer than `target` of the batches' rows, the next group of weights in that
    order is left in float (groups double in size), up to `max_excluded` of the weights. Returns the
    details of the graph written ("excluded": node names; auto_exclude "weights": how many weights).
    """

    import onnx

    from erpack.export.session import create_session

    batches = [_feeds(b) for b in batches]
    source_of = weight_sources(onnx.load(str(src)).graph)
    groups: dict[str, list[str]] = {}
    for name, _ in outlier_ratios(src, batches):  # largest first: a weight ranks by its worst use
        groups.setdefault(source_of[name], []).append(name)
    ranked = list(groups.values())
    base = create_session(src, "cpu").session

    def logits(sess):  # (N, C): per document, or per real token of a token task
        return np.concatenate([real_rows(sess.run([output] if output else None, feeds)[0], feeds["attention_mask"])
                               for feeds in batches])

    ref = logits(base)
    limit = int(len(ranked) * max_excluded)
    k, step, tried = 0, 1, []
    while True:
        details = quantize_dynamic_graph(src, dst, per_channel, reduce_range, [n for g in ranked[:k] for n in g])
        z = logits(create_session(dst, "cpu").session)
        agree = float((z.argmax(1) == ref.argmax(1)).mean()) if z.shape[1] > 1 else 1.0
        tried.append({"excluded": k, "agreement": agree, "max_diff": float(np.abs(z - ref).max())})
        if agree >= target or k >= limit:
            break
        k = min(limit, k + step)
        step *= 2
    details.update({"auto_exclude": {"target": target, "rows": int(len(ref)), "steps": tried, "weights": k,
                                     "ranked": [g[0] for g in ranked[: max(k, 3)]]}})
    return details


class CacheCalibration:
    """A CalibrationDataReader that feeds padded batches of decoded cache records.

    Records are taken evenly over the cache (or `ids`), grouped by length so batches carry little
    padding: only real tokens shape the activation ranges.
    """

    def __init__(self, reader, limit: int = 256, batch_size: int = 16, ids=None):
        records = cache_records(reader, limit, ids)
        if not records:
            raise ExportError(f"calibration cache {getattr(reader, 'location', None) or reader.path} holds no records; static quantization needs some")
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

