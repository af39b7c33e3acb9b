r"""End-to-end benchmarks (`erpack bench`): documents to predictions through every inference path.

    from erpack.bench import BenchConfig, run_bench, card
    result = run_bench(BenchConfig(corpus="rotten_tomatoes", codecs=["int8+zstd:3"], limit=256)).as_dict()
    lines = card(result)  # the human table; result is the JSON document

Modules: documents (which split is scored, and the labels), paths (one class per inference path;
timing from erpack.runtime.timing), runner (caches, interleaved passes), result (the BenchResult),
card (the human table).
"""

from erpack.bench.card import card
from erpack.bench.runner import PATHS, BenchConfig, BenchResult, run_bench

__all__ = ["PATHS", "BenchConfig", "BenchResult", "card", "run_bench"]
