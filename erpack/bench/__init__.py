r"""End-to-end benchmarks (`erpack bench`): documents to predictions through every inference path.

    from erpack.bench import BenchConfig, run_bench, card
    result = run_bench(BenchConfig(corpus="rotten_tomatoes", codecs=["int8+zstd:3"], limit=256)).as_dict()
    lines = card(result)  # the human table; result is the JSON document

Modules: documents (which split is scored, and the labels), paths (one class per inference path;
timing from erpack.runtime.timing), runner (caches, interleaved passes), result (the BenchResult),
card (the human table), pathnames (PATHS, torch-free).

The runner's names load when first used (torch comes with the runner), so `erpack.bench.pathnames` and the
CLI's parser stay light.
"""

import importlib

from erpack.bench.card import card
from erpack.bench.pathnames import PATHS

_HOMES = {"BenchConfig": "erpack.bench.runner", "BenchResult": "erpack.bench.runner", "run_bench": "erpack.bench.runner"}

__all__ = ["PATHS", "BenchConfig", "BenchResult", "card", "run_bench"]


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'erpack.bench' has no attribute {name!r}")
