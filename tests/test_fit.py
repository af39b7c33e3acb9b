"""One rule decides whether a cache fits a task model or a graph (erpack.fit): both callers refuse the
same differences, in one message style, and note the allowed ones."""

from __future__ import annotations

import pytest

from erpack.errors import GraphCacheMismatchError, ManifestMismatchError
from erpack.export.metadata import check_cache
from erpack.fit import check_fit
from erpack.store import CacheReader, CacheWriter
from tests.store.conftest import make_meta, pipe, records


def _cache(folder, codec: str = "fp32", **changes):
    with CacheWriter(folder, meta=make_meta(**changes), codec=pipe(codec)) as w:
        w.commit_shard(records(2))
    return folder


def _expected(codec: str = "fp32") -> dict:
    """What a task model or graph made on make_meta()'s cache records."""
    return dict(make_meta(), codec=pipe(codec).get_config(), codec_spec=pipe(codec).spec)


@pytest.mark.parametrize("field, value, shown", [
    ("layer", 3, "layer 3"), ("model__weights_sha256", "cd" * 32, "weights_sha256 " + "cd" * 8),
    ("model__model_type", "roberta", "model_type roberta"), ("tokenizer__lowercase", False, "tokenizer lowercase False"),
])
def test_task_model_and_graph_refuse_the_same_differences(tmp_path, field, value, shown):
    with CacheReader(_cache(tmp_path / "c", **{field: value})) as r:
        with pytest.raises(ManifestMismatchError, match=f"does not fit task model m.*{shown} .task model expects"):
            check_fit(_expected(), r, "task model m")
        with pytest.raises(GraphCacheMismatchError, match=f"does not fit g.onnx.*{shown} .graph expects"):
            check_cache({"cache": _expected()}, r, "g.onnx")


def test_codec_is_a_note_for_a_task_model_and_refused_by_a_graph_unless_allowed(tmp_path):
    with CacheReader(_cache(tmp_path / "c", codec="fp16", max_length=8)) as r:
        notes = check_fit(_expected(), r, "task model m")
        assert [n.split(" ")[0] for n in notes] == ["codec", "max_length"] and "codec fp16" in notes[0]
        with pytest.raises(GraphCacheMismatchError, match="codec fp16 .graph expects fp32.*--allow-other-codec"):
            check_cache({"cache": _expected()}, r, "g.onnx")
        assert check_cache({"cache": _expected()}, r, "g.onnx", allow_other_codec=True)[0].startswith("codec fp16")


def test_a_fitting_cache_gives_no_notes(tmp_path):
    with CacheReader(_cache(tmp_path / "c")) as r:
        assert check_fit(_expected(), r, "task model m") == [] == check_cache({"cache": _expected()}, r, "g.onnx")
