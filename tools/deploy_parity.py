"""A bundle's predictions against `erpack eval` of its task model (PyTorch), on cached documents and on
the same documents given as text, for each upper graph of the bundle (fp32, int8).

    erpack eval TASK CACHE --labels L --split test --predictions eval.jsonl
    python tools/deploy_parity.py --bundle BUNDLE --cache CACHE --eval eval.jsonl --texts CORPUS.jsonl \
        [--write-results]     # the parity section of docs/results/deploy.md, and deploy-parity.json

For each variant: accuracy from the cache and from text, the share of labels equal to eval's, the
largest probability difference to eval's, and text against cache. Prints a card, then one JSON
document as its last line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from erpack.corpus import iter_corpus  # noqa: E402
from erpack.deploy import BundleRuntime  # noqa: E402
from erpack.runtime.timing import _cpu_model  # noqa: E402

RESULTS_JSON = ROOT / "docs" / "results" / "deploy-parity.json"
RESULTS_MD = ROOT / "docs" / "results" / "deploy.md"
BEGIN, END = "<!-- parity:begin -->", "<!-- parity:end -->"


def max_diff(a: list[dict], b: list[dict]) -> float:
    return max(abs(x["probabilities"][k] - y["probabilities"][k]) for x, y in zip(a, b) for k in x["probabilities"])


def compare(bundle: str, cache: str, ev: dict, texts: dict, variant: str) -> dict:
    ids = list(ev)
    rt = BundleRuntime(bundle, variant=variant, device="cpu")
    cached = rt.predict_ids(cache, ids).rows
    fromtext = rt.predict_texts([texts[i] for i in ids], ids=ids).rows
    ref = [ev[i] for i in ids]
    return {"variant": variant, "documents": len(ids),
            "accuracy_eval": sum(r["predicted"] == r["label"] for r in ref) / len(ids),
            "accuracy_cache": sum(r["predicted"] == e["label"] for r, e in zip(cached, ref)) / len(ids),
            "accuracy_text": sum(r["predicted"] == e["label"] for r, e in zip(fromtext, ref)) / len(ids),
            "labels_equal_eval": sum(r["predicted"] == e["predicted"] for r, e in zip(cached, ref)) / len(ids),
            "max_prob_diff_eval": max_diff(cached, ref),
            "labels_equal_text_cache": sum(a["predicted"] == b["predicted"] for a, b in zip(fromtext, cached)) / len(ids),
            "max_prob_diff_text_cache": max_diff(fromtext, cached)}


def markdown(result: dict, command: str) -> str:
    b = result["bundle_manifest"]
    rows = ["| upper graph | documents | accuracy: eval / bundle from cache / from text | labels equal to eval | "
            "largest probability difference to eval | text vs cache: labels equal, largest difference |",
            "|---|---|---|---|---|---|"]
    for r in result["variants"]:
        rows.append(f"| {r['variant']} | {r['documents']} | {r['accuracy_eval']:.4f} / {r['accuracy_cache']:.4f} / "
                    f"{r['accuracy_text']:.4f} | {r['labels_equal_eval']:.2%} | {r['max_prob_diff_eval']:.1e} | "
                    f"{r['labels_equal_text_cache']:.2%}, {r['max_prob_diff_text_cache']:.1e} |")
    return (f"{BEGIN}\n## Parity: the bundle against `erpack eval`\n\n"
            f"Measured {result['time']} on {result['machine']}: a bundle of {b['model']} cut at layer {b['layer']} "
            f"(codec {b['codec']}, {b['bytes'] / 1e6:.1f} MB), its task model's `erpack eval` predictions "
            f"(PyTorch, from the cache) as the reference, and the same documents given to the bundle as text "
            f"(tokenizer, lower graph, codec round trip, upper graph):\n\n"
            + "".join(f"    {line}\n" for line in result["recipe"] + [command]) + "\n" + "\n".join(rows)
            + "\n\nProbabilities are compared as written (6 decimals). The fp32 graph gives eval's labels; the int8 "
              "graph is the export's int8 variant, whose agreement `erpack export` reports.\n" + f"{END}\n")


def write_results(result: dict, command: str) -> None:
    RESULTS_JSON.write_text(json.dumps(result, indent=1) + "\n")
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else (
        "# Deployment: measured figures\n\nWhat the bundle, its runtime and the service measure; each section names "
        "its command and machine (the guide is [docs/deploy.md](../deploy.md)).\n\n")
    section = markdown(result, command)
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text += "\n" + section
    RESULTS_MD.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--eval", required=True, help="predictions JSONL of `erpack eval --predictions`")
    ap.add_argument("--texts", required=True, help="the corpus the cache was encoded from")
    ap.add_argument("--recipe", default=None, help="the commands that made the bundle, cache and eval file (one per "
                    "line), shown in the results")
    ap.add_argument("--write-results", action="store_true")
    args = ap.parse_args()
    ev = {r["id"]: r for r in map(json.loads, Path(args.eval).read_text().splitlines())}
    texts = {d.id: d.text for d in iter_corpus(args.texts) if d.id in ev}
    manifest = json.loads((Path(args.bundle) / "bundle.json").read_text())
    size = sum(f["bytes"] for f in manifest["files"].values())
    result = {"recipe": args.recipe.strip().splitlines() if args.recipe else [], "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
              "bundle_manifest": {"model": manifest["cache"]["model"]["name"], "layer": manifest["cache"]["layer"],
                                  "codec": manifest["cache"].get("codec_spec"), "bytes": size},
              "variants": [compare(args.bundle, args.cache, ev, texts, v) for v in sorted(manifest["graphs"]["upper"])]}
    result["machine"] = f"{_cpu_model()}, Python {platform.python_version()}"
    for r in result["variants"]:
        print(f"{r['variant']:<5} {r['documents']} docs: accuracy eval {r['accuracy_eval']:.4f}, cache "
              f"{r['accuracy_cache']:.4f}, text {r['accuracy_text']:.4f}; labels = eval {r['labels_equal_eval']:.2%} "
              f"(max prob diff {r['max_prob_diff_eval']:.1e}); text vs cache {r['labels_equal_text_cache']:.2%} "
              f"({r['max_prob_diff_text_cache']:.1e})")
    command = ("python tools/deploy_parity.py --bundle BUNDLE --cache CACHE --eval eval.jsonl --texts CORPUS "
               "--write-results")
    if args.write_results:
        write_results(result, command)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
