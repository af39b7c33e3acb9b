"""Export a task model with exits for ONNX Runtime: one graph per upper layer, with that layer's exit.

    export_exit_graphs(tm, "rt.exits")            # fp32; int8=True: each graph int8 (dynamic, 7-bit weights)

The folder holds `layer-0.onnx` .. `layer-{n-1}.onnx` and `exits.json` (what they are: the rule and
threshold, the task and labels, the cache the graphs expect, and the sha256 of every graph). Graph j < n-1
takes (hidden_states (B, T, H), attention_mask (B, T)) and gives the hidden states after upper layer
k + j, that layer's exit logits (B, C) and, for DACT, its halting logit (B,); the last graph gives the
task head's logits. erpack.depth.ort runs them with batch compaction; `erpack predict` and `erpack bench`
(path erpack-exit-int8) take the folder. Per-layer graphs rather than one graph with control flow: the
documents that stop must leave the batch between layers, which per-layer graphs make a plain numpy step,
and on CPU onnxruntime the chain of per-layer graphs costs little more than the single graph when every
document runs every layer (docs/results/early-exit.md measures it). Written whole or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from erpack.checksums import file_sha256
from erpack.depth.ort import GRAPHS_FILE, GRAPHS_FORMAT
from erpack.depth.runner import ExitModel
from erpack.store.atomic import atomic_folder, write_atomic


class LayerExit(nn.Module):
    """Upper layer k + j and its exit: (hidden, mask) -> (hidden after it, exit logits[, halting logit])."""

    def __init__(self, em: ExitModel, j: int):
        super().__init__()
        self.segment, self.head = em.segments.layers[j], em.exits.heads[j]
        self.view = self.segment.view  # what export's eager_attention looks at

    def forward(self, hidden, mask):
        hidden = self.segment(hidden, mask)
        logits, halting = self.head(hidden, mask)
        return (hidden, logits) if halting is None else (hidden, logits, halting)


class LastLayer(nn.Module):
    """The last upper layer and the task head: (hidden, mask) -> logits."""

    def __init__(self, em: ExitModel):
        super().__init__()
        self.segment, self.final = em.segments.layers[-1], em.segments.final
        self.view = self.segment.view

    def forward(self, hidden, mask):
        return self.final(self.segment(hidden, mask), mask)


def export_exit_graphs(tm, folder, int8: bool = False, overwrite: bool = False, source=None, calibration=None,
                       int8_exclude: str = "auto") -> dict:
    """Write the per-layer graphs of `tm` (a TaskModel with exits) into `folder`; returns the exits.json record.
    int8: `quantize_layers` (the shipped int8 graph's rule for what stays float, per layer, when `calibration`
    batches of cached records are given and int8_exclude is "auto"; the record's `quantization` says what)."""
    from erpack.export.build import _info
    from erpack.export.onnx_export import OPSET, _example_mask, _export

    em = ExitModel.of(tm)
    em.eval()
    n = em.layers
    hidden_size = em.exits.hidden_size
    with torch.no_grad():
        hidden = torch.randn(2, 8, hidden_size, generator=torch.Generator().manual_seed(0))
    mask = _example_mask(2, 8)
    axes = {"hidden_states": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "hidden_out": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}, "halting": {0: "batch"}}
    with atomic_folder(folder, overwrite, what="exit graphs") as tmp:
        for j in range(n):
            last = j == n - 1
            module = LastLayer(em) if last else LayerExit(em, j)
            outputs = ["logits"] if last else ["hidden_out", "logits"] + (["halting"] if em.exits.halting else [])
            name = f"layer-{j}.onnx"
            fp32 = tmp / (f"layer-{j}.fp32.onnx" if int8 else name)
            _export(module, (hidden, mask), fp32, ["hidden_states", "attention_mask"], outputs,
                    {k: v for k, v in axes.items() if k in outputs or k in ("hidden_states", "attention_mask")},
                    "legacy", OPSET)
        quantization = quantize_layers(tmp, n, calibration if int8_exclude == "auto" else None) if int8 else None
        files = {f"layer-{j}.onnx": file_sha256(tmp / f"layer-{j}.onnx") for j in range(n)}
        record = dict(_info(tm, source if source is not None else tm), format=GRAPHS_FORMAT, version=1, part="upper",
                      variant="int8-dynamic" if int8 else "fp32", layers=n, halting=em.exits.halting,
                      early_exit={"rule": em.rule.name, "threshold": em.rule.threshold}, files=files,
                      **({"quantization": quantization} if int8 else {}))
        write_atomic(tmp / GRAPHS_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return record


def quantize_layers(tmp: Path, n: int, calibration=None) -> dict:
    """`tmp`'s layer-J.fp32.onnx to int8 layer-J.onnx (dynamic), by the rule of the shipped int8 upper graph
    (erpack.export.quantize.sensitive_nodes): with `calibration` ((hidden, mask) batches of cached records),
    each layer's outlier-fed weights stay float while its exit's (the last: the head's) argmax agrees with
    fp32 on fewer than 99% of the records, fed the records as the fp32 layers before it leave them; without,
    every weight MatMul is int8. Each graph's `erpack.quantization` metadata and the returned record
    ({"rule", "graphs": {name: details}}) say what stayed float."""
    import onnx

    from erpack.export.quantize import quantize_dynamic_graph, sensitive_nodes
    from erpack.export.session import create_session

    feeds = [{"hidden_states": h, "attention_mask": m} for h, m in calibration] if calibration else None
    graphs = {}
    for j in range(n):
        fp32, dst = tmp / f"layer-{j}.fp32.onnx", tmp / f"layer-{j}.onnx"
        if feeds:
            details = sensitive_nodes(fp32, dst, feeds, output="logits")
            if j < n - 1:  # the next layer's inputs: these records after this layer (fp32)
                sess = create_session(fp32, "cpu").session
                feeds = [dict(f, hidden_states=sess.run(["hidden_out"], f)[0]) for f in feeds]
        else:
            details = quantize_dynamic_graph(fp32, dst)
        proto = onnx.load(str(dst))
        proto.metadata_props.add(key="erpack.quantization", value=json.dumps(details, sort_keys=True))
        onnx.save(proto, str(dst))
        fp32.unlink()
        graphs[dst.name] = {"excluded": details["excluded"], "rewired": details.get("rewired", 0),
                            "auto_exclude": details.get("auto_exclude")}
    return {"method": "dynamic", "rule": "auto" if feeds is not None else "none", "graphs": graphs}


def exits_folder_for(graph: Path, int8: bool = False) -> Path:
    """Where `erpack export` writes the exit graphs beside the graph `graph`: NAME.exits[-int8]/."""
    graph = Path(graph)
    return graph.with_name(f"{graph.stem}.exits{'-int8' if int8 else ''}")
