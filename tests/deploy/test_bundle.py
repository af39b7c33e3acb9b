"""A bundle on disk: what it holds, that its predictions equal the task model's (`erpack eval`, `erpack
predict` of its graph) for cached ids and new texts, and that damage is found and named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from erpack.cli import main
from erpack.deploy import Bundle, BundleRuntime, verify_bundle
from erpack.deploy.bundle import BUNDLE_FILE, file_digest, read_bundle_manifest
from erpack.errors import BundleError, OutputExistsError


def test_the_bundle_lists_every_file_with_its_sha256_and_is_sealed(bundle, tiny):
    folder, summary = bundle
    doc = read_bundle_manifest(folder)
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted([*doc["files"], BUNDLE_FILE]) == sorted(on_disk)
    for name, entry in doc["files"].items():
        assert entry == {"bytes": (folder / name).stat().st_size, "sha256": file_digest(folder / name)}
    assert {"upper.onnx", "upper.int8-dynamic.onnx", "lower.onnx", "tokenizer/tokenizer.json"} <= set(doc["files"])
    assert doc["graphs"] == {"upper": {"fp32": "upper.onnx", "int8": "upper.int8-dynamic.onnx"},
                             "lower": {"fp32": "lower.onnx"}}
    assert doc["task"]["labels"] == ["neg", "pos"] and doc["task"]["kind"] == "classification"
    assert doc["cache"]["model"]["weights_sha256"] == tiny["tm"].expected_cache["model"]["weights_sha256"]
    assert doc["cache"]["layer"] == 2 and doc["cache"]["codec_spec"] == tiny["tm"].expected_cache["codec_spec"]
    assert doc["tokenizer"]["token_type_ids"] is True
    assert summary.text_parity["max_diff"] < 1e-3 and summary.upper_parity["max_diff"] < 1e-4
    assert doc["checksum"].startswith("sha256:")


def test_an_existing_bundle_is_refused_without_overwrite(bundle, tiny):
    from erpack.deploy.build import write_bundle

    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_bundle(tiny["task_model"], bundle[0])


def _graph_rows(tiny, graph, tmp_path, **kw):
    from erpack.predict import predict

    out = tmp_path / "graph.jsonl"
    predict(graph, tiny["cache"], output=out, **kw)
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_cached_predictions_equal_erpack_predict_and_eval(bundle, tiny, tmp_path):
    from erpack.train.evaluation import evaluate

    folder, _ = bundle
    rt = BundleRuntime(folder)
    ids = [r["id"] for r in tiny["rows"]]
    ours = rt.predict_ids(tiny["cache"], ids).rows
    assert ours == _graph_rows(tiny, folder / "upper.onnx", tmp_path, ids=ids)  # the same graph: equal rows
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": r["id"], "label": r["label"], "split": "test"}) + "\n"
                              for r in tiny["rows"]))
    evaluate(tiny["task_model"], tiny["cache"], str(labels), "test", predictions=tmp_path / "eval.jsonl", device="cpu")
    torch_rows = {r["id"]: r for r in map(json.loads, (tmp_path / "eval.jsonl").read_text().splitlines())}
    for row in ours:  # PyTorch: same label, probabilities within the export tolerance
        ref = torch_rows[row["id"]]
        assert row["predicted"] == ref["predicted"]
        assert max(abs(row["probabilities"][k] - ref["probabilities"][k]) for k in ref["probabilities"]) < 1e-5


def test_text_predictions_equal_the_cached_ones_and_erpack_predict(bundle, tiny, tmp_path):
    folder, _ = bundle
    rt = BundleRuntime(folder)
    docs = [r["text"] for r in tiny["rows"]]
    ids = [r["id"] for r in tiny["rows"]]
    from_text = rt.predict_texts(docs, ids=ids).rows
    from_cache = rt.predict_ids(tiny["cache"], ids).rows
    for a, b in zip(from_text, from_cache):
        assert a["source"] == "text" and b["source"] == "cache"
        assert a["predicted"] == b["predicted"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-3
    # erpack predict of the task model's graph for new texts through the same lower graph: equal rows
    new = [{"id": f"new{i}", "text": t} for i, t in enumerate(["w1 w2 w3", "w7 w7 w9 w40", "w99"])]
    corpus = tmp_path / "new.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in new))
    ref = _graph_rows(tiny, folder / "upper.onnx", tmp_path, ids=[r["id"] for r in new], texts=str(corpus),
                      lower_graph=folder / "lower.onnx")
    assert rt.predict_texts([r["text"] for r in new], ids=[r["id"] for r in new]).rows == ref
    # and through PyTorch's lower stack (erpack predict's default): the same labels, within the codec's step
    ref_torch = _graph_rows(tiny, folder / "upper.onnx", tmp_path, ids=[r["id"] for r in new], texts=str(corpus))
    for a, b in zip(ref, ref_torch):
        assert a["predicted"] == b["predicted"]


def test_text_logits_match_pytorch_lower_codec_upper(bundle, tiny):
    import torch

    from erpack.runtime.lower import run_lower
    from erpack.tokens import tokenize

    rt = BundleRuntime(bundle[0])
    docs = [__import__("erpack.corpus", fromlist=["Document"]).Document(r["id"], r["text"]) for r in tiny["rows"]]
    ours, _ = rt.text_logits(docs)
    enc, _ = tokenize(rt.tokenizer, docs, rt.bundle.max_length)
    tm = tiny["tm"]
    ref = []
    for h, e in zip(run_lower(tm.lower, enc, rt.tokenizer.pad_token_id), enc):
        h = rt.roundtrip(h, e["input_ids"])
        ref.append(tm.predict(torch.from_numpy(h)[None], torch.ones((1, len(h)), dtype=torch.long))[0].numpy())
    diff = np.abs(ours - np.stack(ref))
    print(f"text logits vs PyTorch: max {diff.max():.2e} mean {diff.mean():.2e}")
    assert diff.max() < 1e-3


def test_the_bundle_tokenizer_equals_the_transformers_one(bundle, tiny):
    from transformers import AutoTokenizer

    from erpack.corpus import Document
    from erpack.tokens import tokenize

    rt = BundleRuntime(bundle[0])
    hf = AutoTokenizer.from_pretrained(str(tiny["folder"]))
    docs = [Document(r["id"], r["text"]) for r in tiny["rows"]] + [Document("long", " ".join(["w3"] * 500)),
                                                                   Document("pair", "w1 w2", "w3 w4 w5")]
    assert tokenize(rt.tokenizer, docs, 32) == tokenize(hf, docs, 32)


def test_int8_variant_agrees(bundle, tiny):
    fp32, int8 = BundleRuntime(bundle[0]), BundleRuntime(bundle[0], variant="int8")
    ids = [r["id"] for r in tiny["rows"]]
    a, b = fp32.predict_ids(tiny["cache"], ids).rows, int8.predict_ids(tiny["cache"], ids).rows
    assert np.mean([x["predicted"] == y["predicted"] for x, y in zip(a, b)]) >= 0.9


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle[0], dst)
    return dst


def test_verify_finds_a_changed_byte_and_names_the_file(bundle, tmp_path, capsys):
    folder = _copy(bundle, tmp_path)
    assert verify_bundle(folder).ok and main(["verify", str(folder)]) == 0
    data = bytearray((folder / "upper.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "upper.onnx").write_bytes(bytes(data))
    report = verify_bundle(folder)
    assert [f["file"] for f in report.failures] == ["upper.onnx"] and "sha256" in report.failures[0]["error"]
    capsys.readouterr()
    assert main(["verify", str(folder)]) == 1
    assert "FAILED     upper.onnx: sha256" in capsys.readouterr().out


@pytest.mark.parametrize("damage, expect", [
    ("remove lower.onnx", "lower.onnx is missing"),
    ("truncate tokenizer/tokenizer.json", "tokenizer/tokenizer.json is"),
    ("edit bundle.json", "fails its checksum"),
    ("remove bundle.json", "not a bundle: it has no bundle.json"),
])
def test_a_damaged_or_incomplete_bundle_is_an_error_naming_the_file(bundle, tmp_path, capsys, damage, expect):
    folder = _copy(bundle, tmp_path)
    verb, name = damage.split(" ", 1)
    path = folder / name
    if verb == "remove":
        path.unlink()
    elif verb == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_text(path.read_text().replace('"neg"', '"bad"'))
    with pytest.raises(BundleError, match=expect):
        Bundle.load(folder)
    capsys.readouterr()
    assert main(["predict", str(folder), "--text", "w1 w2"]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err


def test_cli_predict_texts_stdin_file_and_ids(bundle, tiny, tmp_path, capsys, monkeypatch):
    import io

    folder = str(bundle[0])
    assert main(["predict", folder, "--text", "w1 w2", "--text", "w3"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["text-0", "text-1"]
    monkeypatch.setattr("sys.stdin", io.StringIO("w5 w6\n\nw7\n"))
    assert main(["predict", folder, "--text", "-", "-o", str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    # --texts FILE: the file's documents, not the cache's; with --ids, those, from the file or the cache
    assert main(["predict", folder, str(tiny["cache"]), "--texts", str(tiny["corpus"]), "--ids", "d003,d001"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["source"]) for r in rows] == [("d003", "text"), ("d001", "text")]
    few = tmp_path / "few.jsonl"
    few.write_text(json.dumps({"id": "n1", "text": "w4 w5"}) + "\n")
    assert main(["predict", folder, str(tiny["cache"]), "--texts", str(few)]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["n1"]
    assert main(["predict", folder, str(tiny["cache"]), "--texts", str(few), "--ids", "n1,d002,zz"]) == 1
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r.get("source"), "error" in r) for r in rows] == [("n1", "text", False), ("d002", "cache", False),
                                                                         ("zz", None, True)]
    assert main(["predict", folder, "--text", "w1", "--labels", "x.jsonl"]) == 2
    assert "apply to a graph" in capsys.readouterr().err


def test_a_regression_bundle_gives_scores(tiny, tmp_path):
    from erpack.deploy.build import write_bundle
    from tests.export.conftest import make_task_model

    make_task_model(tiny["folder"], tiny["cache"], task="regression").save(tmp_path / "reg")
    s = write_bundle(tmp_path / "reg", tmp_path / "bundle", quantize=False)
    assert s.int8 is None and s.text_parity["argmax_agreement"] is None
    rt = BundleRuntime(tmp_path / "bundle")
    assert rt.bundle.variants() == ["fp32"]
    text = rt.predict_texts([tiny["rows"][0]["text"]], ids=["a"]).rows[0]
    cached = rt.predict_ids(tiny["cache"], [tiny["rows"][0]["id"]]).rows[0]
    assert set(text) == {"id", "source", "score"} and abs(text["score"] - cached["score"]) < 1e-3
    with pytest.raises(BundleError, match="no int8 upper graph"):
        BundleRuntime(tmp_path / "bundle", variant="int8")


def test_texts_added_to_the_cache_read_back_as_they_were_predicted(bundle, tiny, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(tiny["cache"], cache)
    rt = BundleRuntime(bundle[0])
    texts, ids = ["w1 w2 w3 w4", "w8 " * 40, tiny["rows"][0]["text"]], ["new1", "new2", tiny["rows"][0]["id"]]
    got = rt.predict_texts(texts, ids=ids, add_to_cache=cache)
    assert got.added_to_cache == 2 and got.truncated == ["new2"]  # the cached id is left as it was
    again = rt.predict_ids(cache, ids[:2]).rows
    assert [{**r, "source": "text"} for r in again] == got.rows[:2]  # the record decodes to what the text ran on
    from erpack.store import CacheReader, verify_cache

    assert verify_cache(cache).ok
    with CacheReader(cache) as r:
        assert r.info("new2")["truncated"] and len(r) == len(tiny["rows"]) + 2
    assert main(["predict", str(bundle[0]), str(cache), "--text", "w5 w6", "--add-to-cache", "--json"]) == 0
    assert '"added_to_cache": 1' in capsys.readouterr().err
    assert main(["predict", str(bundle[0]), "--text", "w5", "--add-to-cache"]) == 2


def test_a_cache_at_a_url_is_read_through_fsspec(bundle, tiny):
    from tests.remote import upload_cache

    url = upload_cache(tiny["cache"], "memory://deploy-test/cache")
    rt = BundleRuntime(bundle[0])
    ids = [r["id"] for r in tiny["rows"][:4]]
    assert rt.predict_ids(url, ids).rows == rt.predict_ids(tiny["cache"], ids).rows
