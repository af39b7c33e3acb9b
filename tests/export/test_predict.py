"""`erpack predict`: predictions equal PyTorch's, bad caches refused, missing ids reported, texts encoded."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from erpack.cli import main
from erpack.errors import GraphCacheMismatchError
from erpack.export.inputs import pad_batch
from erpack.predict import MISSING, predict
from erpack.store import CacheReader
from tests.export.conftest import corpus_rows, write_cache, write_jsonl


def _lines(path):
    return [json.loads(line) for line in open(path)]


def test_predictions_match_pytorch(exported, tiny, tmp_path):
    out, _ = exported
    s = predict(out, tiny["cache"], output=tmp_path / "p.jsonl", batch_size=5, labels=str(tiny["corpus"]))
    assert s.predicted == s.requested == len(tiny["rows"]) and not s.missing
    assert s.provider == "CPUExecutionProvider" and s.metrics["documents"] == len(tiny["rows"])
    rows = {r["id"]: r for r in _lines(tmp_path / "p.jsonl")}
    with CacheReader(tiny["cache"]) as reader, torch.no_grad():
        for doc_id in ["d000", "d007", "d023"]:
            hidden, mask = pad_batch([reader.get(doc_id)])
            p = torch.softmax(tiny["tm"].upper(torch.from_numpy(hidden), torch.from_numpy(mask)), -1)[0].numpy()
            got = np.array([rows[doc_id]["probabilities"][k] for k in ("neg", "pos")])
            assert np.abs(got - p).max() < 1e-5
            assert rows[doc_id]["source"] == "cache" and rows[doc_id]["label"] in ("neg", "pos")


def test_missing_ids_reported_not_skipped(exported, tiny, tmp_path, capsys):
    out, _ = exported
    code = main(["predict", str(out), str(tiny["cache"]), "--ids", "d001,nope-1,d002,nope-2", "-o",
                 str(tmp_path / "p.jsonl")])
    err = capsys.readouterr().err
    assert code == 1 and "nope-1" in err and "nope-2" in err and "2 id(s)" in err
    rows = _lines(tmp_path / "p.jsonl")
    assert [r["id"] for r in rows] == ["d001", "nope-1", "d002", "nope-2"]
    assert rows[1] == {"id": "nope-1", "error": MISSING} and "predicted" in rows[0]


def test_graph_for_another_cache_is_refused(exported, tiny, tmp_path, capsys):
    out, _ = exported
    other_layer = write_cache(tmp_path / "k1", tiny["folder"], tiny["rows"][:3], layer=1)
    with pytest.raises(GraphCacheMismatchError, match="layer 1 .graph expects 2"):
        predict(out, other_layer)
    other_codec = write_cache(tmp_path / "fp16", tiny["folder"], tiny["rows"][:3], codec="fp16")
    with pytest.raises(GraphCacheMismatchError, match="codec fp16"):
        predict(out, other_codec)
    assert predict(out, other_codec, allow_other_codec=True).predicted == 3
    from tests.export.conftest import make_model_folder

    other_weights = write_cache(tmp_path / "w", make_model_folder(tmp_path / "m2", seed=7), tiny["rows"][:3])
    assert main(["predict", str(out), str(other_weights), "-o", str(tmp_path / "p.jsonl")]) == 2
    assert "weights_sha256" in capsys.readouterr().err


def test_texts_run_through_the_lower_stack_and_are_added(exported, tiny, tmp_path):
    out, _ = exported
    cache = shutil.copytree(tiny["cache"], tmp_path / "cache")
    new = corpus_rows(4, seed=9, prefix="new")
    texts = write_jsonl(tmp_path / "new.jsonl", new)
    ids = ["d003", "new000", "new001", "gone"]
    s = predict(out, cache, ids=ids, texts=texts, add_to_cache=True, output=tmp_path / "p.jsonl")
    assert s.missing == ["gone"] and s.from_text.documents == 2 and s.from_text.added_to_cache == 2
    rows = {r["id"]: r for r in _lines(tmp_path / "p.jsonl")}
    assert rows["new000"]["source"] == "text" and rows["d003"]["source"] == "cache" and "error" in rows["gone"]
    # from the cache now, the same prediction
    again = predict(out, cache, ids=["new000", "new001"], output=tmp_path / "p2.jsonl")
    assert again.from_cache == 2 and not again.missing
    for r in _lines(tmp_path / "p2.jsonl"):
        for k, v in r["probabilities"].items():
            assert abs(v - rows[r["id"]]["probabilities"][k]) < 1e-5
    # and through the exported lower graph: the same result
    from erpack.export import export_task_model

    lower = tmp_path / "lower.onnx"
    export_task_model(tiny["task_model"], lower, part="lower")
    s3 = predict(out, tiny["cache"], ids=["new002"], texts=texts, lower_graph=lower, output=tmp_path / "p3.jsonl")
    assert s3.from_text.lower.startswith("onnx:") and s3.predicted == 1


def test_lower_graph_refused_as_upper(tiny, tmp_path):
    from erpack.errors import ExportError
    from erpack.export import export_task_model

    lower = tmp_path / "lower.onnx"
    export_task_model(tiny["task_model"], lower, part="lower")
    with pytest.raises(ExportError, match="lower part"):
        predict(lower, tiny["cache"])


def test_cli_export_prints_parity(tiny, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = main(["export", str(tiny["task_model"]), "-o", str(out), "--quantize", "dynamic", "--json"])
    text = capsys.readouterr().out
    assert code == 0 and out.exists() and "largest |ONNX - PyTorch|" in text and "int8-dynamic" in text
    assert json.loads(text.strip().splitlines()[-1])["parity"]["passed"]


def test_json_summary_keeps_its_fields(exported, tiny, tmp_path, capsys):
    """PredictResult.as_dict() is the document `erpack predict --json` printed before it was a dataclass."""
    out, _ = exported
    assert main(["predict", str(out), str(tiny["cache"]), "--labels", str(tiny["corpus"]), "-o",
                 str(tmp_path / "p.jsonl"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(s) == ["graph", "cache", "variant", "task", "requested", "predicted", "from_cache", "from_text",
                       "missing", "provider", "providers", "output", "notes", "seconds", "inference_seconds",
                       "waited_on_reader_seconds", "documents_per_second", "metrics"]
    assert list(s["from_text"]) == ["documents", "lower", "truncated", "added_to_cache"]
    assert s["predicted"] == len(tiny["rows"]) and s["metrics"]["documents"] == len(tiny["rows"])


def test_texts_without_ids_predict_the_files_documents_only(exported, tiny, tmp_path):
    """Asked for one new sentence, predict runs that sentence, not the whole cache with it (issue 23)."""
    out, _ = exported
    texts = write_jsonl(tmp_path / "one.jsonl", [{"id": "one", "text": "w1 w2 w3"}, {"id": tiny["rows"][0]["id"],
                                                                                    "text": tiny["rows"][0]["text"]}])
    s = predict(out, tiny["cache"], texts=texts, output=tmp_path / "p.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert s.requested == 2 and [(r["id"], r["source"]) for r in rows] == [("one", "text"), (tiny["rows"][0]["id"], "cache")]
