"""Largest difference between upper(lower(x)) and the full model, per architecture and split layer.

Runs every architecture the sweep supports (tiny random configs, tests/models/sweep.py) and the two
real models at every k on padded batches of varied lengths, and prints a table, then one JSON
document as the last line.

    .venv/bin/python tools/split_parity.py            # tiny configs + real MiniLM and MPNet
    .venv/bin/python tools/split_parity.py --tiny-only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erpack import split_model  # noqa: E402
from erpack.models import load_model  # noqa: E402
from erpack.models.split import depth  # noqa: E402
from tests.checkers import max_diff_on_tokens  # noqa: E402
from tests.models.sweep import sweep_all  # noqa: E402


def worst_over_layers(model, ids, mask) -> list[float]:
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        diffs = []
        for k in range(depth(model) + 1):
            lower, upper = split_model(model, k)
            diffs.append(max_diff_on_tokens(upper(lower(ids, mask), mask), full, mask))
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny-only", action="store_true", help="skip the real models")
    args = parser.parse_args()
    rows = []
    for r in sweep_all():
        if r.status == "supported":
            rows.append({"model": f"tiny {r.model_type}", "layers": r.layers, "max_abs_diff": r.max_diff})
    if not args.tiny_only:
        from erpack.assets import load_dataset

        texts = [r.text for r in load_dataset("rotten_tomatoes", limit=6)] + [load_dataset("bbc", limit=1)[0].text]
        for name in ("minilm", "mpnet"):
            loaded = load_model(name)
            b = loaded.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            diffs = worst_over_layers(loaded.model, b["input_ids"], b["attention_mask"])
            rows.append({"model": name, "layers": len(diffs) - 1, "max_abs_diff": max(diffs)})
    print(f"{'model':28s} {'k range':>8s} {'max |upper(lower(x)) - model(x)|':>34s}")
    for r in rows:
        print(f"{r['model']:28s} {'0..' + str(r['layers']):>8s} {r['max_abs_diff']:>34.2e}")
    import transformers

    print(json.dumps({"rows": rows, "transformers": transformers.__version__, "torch": torch.__version__,
                      "machine": platform.platform()}))


if __name__ == "__main__":
    main()
