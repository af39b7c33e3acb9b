"""onnxruntime's transformer graph optimizer, where it applies, with a report of what it fused.

`onnxruntime.transformers.optimizer.optimize_model` pattern-matches BERT-style subgraphs (attention,
LayerNorm with residual add, GELU) into fused kernels. Its "bert" patterns cover the BERT family
(BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT). On other encoders (MPNet's relative position
bias, DeBERTa's disentangled attention) the attention pattern does not match, and only the
LayerNorm/GELU fusions can apply: the report says what was fused, so "optimized" is never claimed
for a graph that came out unchanged. The caller checks parity of the result like any other graph.
"""

from __future__ import annotations

import logging
from pathlib import Path

from erpack.errors import ExportError

# model_type -> onnxruntime optimizer model_type; anything else is tried as "bert" (partial fusion).
OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
                   "electra": "bert", "distilbert": "bert", "mpnet": "bert", "deberta": "bert", "deberta-v2": "bert"}


def optimize_graph(src, dst, model_type: str, num_heads: int, hidden_size: int, fuse_attention: bool = True) -> dict:
    """Optimize the graph at `src` into `dst` (CPU kernels); return {"fused": {op: count}, ...}.

    fuse_attention=False keeps attention unfused (LayerNorm and GELU still fuse): the fused `Attention`
    kernel takes one head count for the whole graph, which a pruned stack whose layers kept different
    numbers of heads does not have (onnxruntime then refuses to load the graph).
    """
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:
        raise ExportError("onnxruntime.transformers is not available: pip install 'erpack[onnx]'") from None

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    kind = OPTIMIZER_TYPES.get(model_type, "bert")
    options = FusionOptions(kind)
    options.enable_attention = fuse_attention
    try:
        model = optimize_model(str(src), model_type=kind, num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=options, opt_level=1, use_gpu=False)
    except Exception as exc:  # the optimizer raises plain exceptions on patterns it half-matches
        raise ExportError(f"onnxruntime's optimizer failed on {src} ({type(exc).__name__}: {str(exc)[:200]}); "
                          "export without --optimize") from None
    fused = {op: int(n) for op, n in (model.get_fused_operator_statistics() or {}).items() if n}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    model.save_model_to_file(str(dst), use_external_data_format=False)
    out = {"optimizer_model_type": kind, "fused": fused,
           "attention_fused": bool(fused.get("Attention") or fused.get("MultiHeadAttention"))}
    if not fuse_attention:
        out["attention_not_fused_because"] = "layers have different head counts (pruned)"
    return out
