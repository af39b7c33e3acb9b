"""The acceptance table of docs/export.md from `tools/export_bench.py` outputs, one Markdown row each.

    python tools/export_table.py runs/s10/xb-minilm-upper.txt:runs/s10/onnx-minilm-upper ...

Each input is the saved output of one export_bench run (its last line is the JSON document), then a
colon and the run's --out folder (newer outputs record it as `meta.out`, and the folder may be left
out); the number of MatMuls left in float is read from that folder's int8 graph's `erpack` metadata
(`quantization.excluded`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(arg: str) -> str:
    import onnx

    path, _, out = arg.partition(":")
    d = json.loads(Path(path).read_text().strip().splitlines()[-1])
    m = d["meta"]
    r = {x["variant"]: x for x in d["results"]}
    fp, q, st, pt = r["onnx fp32"], r["onnx int8-dynamic"], r.get("onnx int8-static"), r["pytorch fp32"]
    graph = Path(out or m["out"]) / "upper.int8-dynamic.onnx"
    props = {p.key: p.value for p in onnx.load(str(graph), load_external_data=False).metadata_props}
    excluded = len(json.loads(props["erpack"]).get("quantization", {}).get("excluded", []))
    static = f"{100 * st['accuracy']:.2f}" if st else "-"
    return (f"| {m['model']} k={m['layer']} | `{Path(m['task_model']).name}` | {m['parity_max_diff']:.1e} | "
            f"{100 * fp['accuracy']:.2f} | {100 * q['accuracy']:.2f} ({100 * (q['accuracy'] - fp['accuracy']):+.2f}) | "
            f"{100 * q['argmax_agreement_vs_onnx_fp32']:.1f}% | {q['bytes'] / 1e6:.1f} / {fp['bytes'] / 1e6:.1f} | "
            f"{pt['median_ms']:.0f} | {fp['median_ms']:.0f} | {q['median_ms']:.0f} | "
            f"**{q['speedup_vs_pytorch']:.2f}** | {static} | {excluded} |")


if __name__ == "__main__":
    print("| encoder | task model | fp32 parity max\\|dz\\| | fp32 acc | int8 acc (Δ pts) | int8 agrees with fp32 "
          "| int8 / fp32 MB | PyTorch ms | ONNX fp32 ms | int8 ms | int8 x PyTorch | static int8 acc | MatMuls left float |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in sys.argv[1:]:
        print(row(p))
