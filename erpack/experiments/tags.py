"""Configurations of one grid, told apart by a tag, merged into one: per run, the best on validation
(`select`) or the first tag listed that has it (`overlay`).

Rows of kinds that belong to no training configuration (UNTAGGED: encode, timing) are kept whatever
the tags say and never merged.
"""

from __future__ import annotations

from erpack.experiments.grid import decile_of

UNTAGGED = ("encode", "timing")
MERGES = ("validation", "order")


def keep_tags(rows: list[dict], tags: list[str]) -> list[dict]:
    """The rows of configurations `tags`, and every untagged row."""
    return [r for r in rows if r["kind"] in UNTAGGED or r.get("tag", "") in tags]


def all_tags(rows: list[dict]) -> list[str]:
    """The tags of the configurations in `rows`, sorted."""
    return sorted({r.get("tag", "") for r in rows if r["kind"] not in UNTAGGED})


def merge_tags(rows: list[dict], tags: list[str], by: str = "validation") -> list[dict]:
    """One configuration out of several: for each (model, data set, codec, mode, seed), and for each
    (model, data set, seed) baseline, the run of `tags` with the best validation accuracy (the first
    tag listed wins a tie). The test split plays no part in the choice. by="order": the first tag
    listed that has the run (an overlay: one configuration's runs in place of another's). The rows
    come back tagged "TAG1+TAG2+...", each with the tag it was taken from in "selected"."""
    if by not in MERGES:
        raise ValueError(f"merge by {by!r}; one of {MERGES}")
    name = "+".join(tags)
    best: dict = {}
    for r in rows:
        if r["kind"] in UNTAGGED or r.get("tag", "") not in tags:
            continue
        key = (r["kind"], r["model"], r["dataset"], r.get("codec"), r.get("mode"), r.get("seed"), decile_of(r))
        validation = r["result"]["best_validation"].get("accuracy", float("-inf")) if by == "validation" else 0.0
        score = (validation, -tags.index(r.get("tag", "")))
        if key not in best or score > best[key][0]:
            best[key] = (score, r)
    chosen = [{**r, "tag": name, "selected": r.get("tag", "")} for _, r in best.values()]
    return [r for r in rows if r["kind"] in UNTAGGED] + chosen
