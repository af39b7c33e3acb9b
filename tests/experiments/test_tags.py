"""erpack.experiments.tags: configurations merged by validation score or by the order they are listed."""

from erpack.experiments.tags import all_tags, keep_tags, merge_tags
from tests.experiments.rows import run

ENCODE = {"kind": "encode", "model": "m", "dataset": "rt", "codec": "fp32", "layer": 3, "seconds": 1.0, "bytes": 1}


def test_select_takes_the_best_validation_run_and_keeps_untagged_rows():
    rows = [ENCODE, run("recycled", 0, 0.70, validation=0.6), run("recycled", 0, 0.65, tag="b", validation=0.8),
            run("recycled", 1, 0.75, validation=0.9), run("recycled", 1, 0.99, tag="b", validation=0.1),
            run("recycled", 0, 0.5, tag="c", validation=1.0)]
    merged = merge_tags(rows, ["a", "b"])
    assert merged[0] is ENCODE
    chosen = {r["seed"]: r for r in merged[1:]}
    assert {s: (r["selected"], r["tag"]) for s, r in chosen.items()} == {0: ("b", "a+b"), 1: ("a", "a+b")}
    assert len(merged) == 3  # tag c is not asked for


def test_overlay_takes_the_first_tag_listed_that_has_the_run():
    rows = [run("recycled", 0, 0.70, validation=0.9), run("recycled", 0, 0.65, tag="b", validation=0.1),
            run("recycled", 1, 0.99, tag="b")]
    assert [r["selected"] for r in merge_tags(rows, ["b", "a"], by="order")] == ["b", "b"]
    assert sorted(r["selected"] for r in merge_tags(rows, ["a", "b"], by="order")) == ["a", "b"]


def test_keep_tags_and_all_tags():
    rows = [ENCODE, run("baseline", 0, 0.8), run("baseline", 0, 0.8, tag="b"), run("baseline", 0, 0.8, tag="")]
    assert keep_tags(rows, ["b"]) == [ENCODE, rows[2]]
    assert all_tags(rows) == ["", "a", "b"]
