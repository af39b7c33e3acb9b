r"""End-to-end benchmarks (`erpack bench`): documents to predictions through every inference path.

    from erpack.bench import BenchConfig, run_bench, card
    result = run_bench(BenchConfig(corpus="rotten_tomatoes:test", codecs=["int8+zstd:3"], limit=256))
    lines = card(result)  # the human table; result is the JSON document

Modules: paths (one class per inference path; timing from erpack.runtime.timing), runner (documents, caches, interleaved passes, the JSON result), card (the human table).
"""

from erpack.bench.card import card
from erpack.bench.runner import PATHS, BenchConfig, run_bench

__all__ = ["PATHS", "BenchConfig", "card", "run_bench"]
