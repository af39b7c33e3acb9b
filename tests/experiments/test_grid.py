"""erpack.experiments.grid: results.jsonl rows, which runs are done, a cache encoded once under a lock."""

import json
from concurrent.futures import ThreadPoolExecutor

from erpack.experiments.grid import (
    RESULTS,
    append_result,
    decile_of,
    ensure_cache,
    finished,
    load_results,
    run_key,
)
from erpack.store import CacheReader
from tests.experiments.rows import run


def test_rows_append_and_read_back_and_name_their_run(tmp_path):
    path = tmp_path / RESULTS
    assert load_results(path) == [] and finished(path) == set()
    append_result(path, run("baseline", 0, 0.8))
    append_result(path, run("recycled", 1, 0.7, mode="upper", codec="fp32") | {"test_decile": 3})
    rows = load_results(path)
    assert [r["kind"] for r in rows] == ["baseline", "recycled"]
    assert [decile_of(r) for r in rows] == [9, 3]  # no decile recorded: the default split
    assert finished(path) == {("baseline", "m", "rt", None, "full", 0, "a", 9, None),
                              ("recycled", "m", "rt", "fp32", "upper", 1, "a", 3, 3)}
    assert run_key(rows[1]) in finished(path)
    assert run_key(rows[1] | {"layer": 2}) not in finished(path)  # another split: another run from the cache
    assert run_key(rows[0] | {"layer": 2}) in finished(path)  # the full fine-tune is the same whatever the split


def test_grids_sharing_a_work_folder_encode_a_cache_once(tmp_path):
    corpus = tmp_path / "rt-file-2-1-1.jsonl"
    texts = ["a fine film", "dull and long", "a fresh take on an old story", "it drags"]
    corpus.write_text("".join(json.dumps({"id": f"rt-{i}", "text": t, "label": "fresh", "split": "train"}) + "\n"
                              for i, t in enumerate(texts)))
    with ThreadPoolExecutor(2) as pool:  # two grids at once: the lock makes the second wait, then reuse
        made = list(pool.map(lambda _: ensure_cache(tmp_path, corpus, "minilm", "rt", "int8z", 3, 32), range(2)))
    assert made[0][0] == made[1][0]
    assert sum(row is not None for _, row in made) == 1  # one call encoded, the other found its row
    encodes = [r for r in load_results(tmp_path / RESULTS) if r["kind"] == "encode"]
    assert len(encodes) == 1 and encodes[0]["documents"] == 4
    with CacheReader(made[0][0]) as reader:
        assert reader.meta["layer"] == 3 and len(reader) == 4
