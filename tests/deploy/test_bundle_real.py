"""The real MiniLM cut at k=3 (a task model with a random head over an int8z cache of 48 real reviews):
its bundle predicts the reviews from text as it predicts them from the cache, and as `erpack predict`
of its graph does, and the bundle's tokenizer splits them as transformers does."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification

    from erpack.assets import load_dataset, resolve_model
    from erpack.deploy.build import write_bundle
    from erpack.encode import encode_corpus
    from erpack.store import CacheReader
    from erpack.train import TaskModel

    root = tmp_path_factory.mktemp("minilm-bundle")
    rows = [r for r in load_dataset("rotten_tomatoes") if r.split == "test"][:48]
    corpus = root / "reviews.jsonl"
    corpus.write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in rows))
    encode_corpus(str(corpus), str(root / "cache"), model="minilm", layer=3, codec="int8z")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=2).eval()
    with CacheReader(root / "cache") as r:
        expected = {"model": r.meta["model"], "layer": 3, "max_length": r.meta["max_length"],
                    "tokenizer": r.meta["tokenizer"], "codec": r.manifest["codec"], "codec_spec": r.codec.spec}
    TaskModel(model, {"task": "classification", "labels": ["neg", "pos"], "mode": "upper", "adapter": None,
                      "layer": 3, "cache": expected}).save(root / "task")
    summary = write_bundle(root / "task", root / "bundle", calibration_cache=root / "cache")
    return {"root": root, "rows": rows, "corpus": corpus, "cache": root / "cache", "bundle": root / "bundle",
            "summary": summary}


def test_minilm_bundle_text_and_cache_predictions_agree(minilm_bundle, tmp_path):
    from erpack.deploy import BundleRuntime
    from erpack.predict import predict

    b = minilm_bundle
    rt = BundleRuntime(b["bundle"], device="cpu")
    ids = [r.id for r in b["rows"]]
    cached = rt.predict_ids(b["cache"], ids).rows
    texts = rt.predict_texts([r.text for r in b["rows"]], ids=ids).rows
    worst = max(abs(a["probabilities"][k] - c["probabilities"][k]) for a, c in zip(texts, cached)
                for k in a["probabilities"])
    print(f"MiniLM bundle: text vs cache, largest probability difference {worst:.2e}; "
          f"bundle {b['summary'].bytes / 1e6:.1f} MB, text parity {b['summary'].text_parity}")
    assert [a["predicted"] for a in texts] == [c["predicted"] for c in cached] and worst < 1e-2
    out = tmp_path / "graph.jsonl"
    predict(b["bundle"] / "upper.onnx", b["cache"], ids=ids, output=out)
    assert cached == [json.loads(x) for x in out.read_text().splitlines()]


def test_minilm_bundle_tokenizer_equals_transformers(minilm_bundle):
    from transformers import AutoTokenizer

    from erpack.assets import resolve_model
    from erpack.corpus import Document
    from erpack.deploy import BundleRuntime
    from erpack.tokens import tokenize

    rt = BundleRuntime(minilm_bundle["bundle"], device="cpu")
    docs = [Document(r.id, r.text) for r in minilm_bundle["rows"]]
    hf = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    assert tokenize(rt.tokenizer, docs, rt.bundle.max_length) == tokenize(hf, docs, rt.bundle.max_length)
