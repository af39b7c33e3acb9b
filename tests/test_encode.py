"""`erpack encode` on the real MiniLM: values, resume, append, duplicates, bad input, SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from erpack.assets import load_dataset
from erpack.encode import encode_corpus
from erpack.errors import CodecError, InputError, ManifestMismatchError
from erpack.store import CacheReader

pytestmark = pytest.mark.real


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def rt_docs(n: int, start: int = 0) -> list[dict]:
    return [{"id": r.id, "text": r.text} for r in load_dataset("rotten_tomatoes", limit=start + n)[start:]]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def minilm():
    from erpack.models import load_model

    return load_model("minilm")


def test_cache_holds_the_hidden_states_entering_layer_k(tmp_path, minilm):
    corpus = write_jsonl(tmp_path / "c.jsonl", rt_docs(12))
    s = encode_corpus(str(corpus), tmp_path / "cache", layer=3, codec="fp32", shard_size=5, batch_size=4)
    assert (s.encoded, s.already_in_cache, s.layer) == (12, 0, 3)
    reader = CacheReader(tmp_path / "cache")
    assert reader.ids() == [d["id"] for d in rt_docs(12)]
    assert reader.meta["layer"] == 3 and reader.meta["model"]["weights_sha256"] == minilm.sha256
    worst = 0.0
    with torch.no_grad():
        for doc in rt_docs(12):
            ids = minilm.tokenizer(doc["text"], return_tensors="pt")
            want = minilm.model(**ids, output_hidden_states=True).hidden_states[3][0].numpy()
            got = reader.get(doc["id"])
            assert got.shape == want.shape  # non-padding tokens only
            worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= 1e-5, worst


def test_rerun_resumes_and_append_adds(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", rt_docs(10))
    encode_corpus(str(corpus), tmp_path / "cache", layer=2, codec="fp16", shard_size=4)
    before = folder_bytes(tmp_path / "cache")
    again = encode_corpus(str(corpus), tmp_path / "cache", layer=2, codec="fp16", shard_size=4)
    assert (again.encoded, again.already_in_cache) == (0, 10)
    assert folder_bytes(tmp_path / "cache") == before
    more = write_jsonl(tmp_path / "more.jsonl", rt_docs(5, start=10))
    added = encode_corpus(str(more), tmp_path / "cache", layer=2, codec="fp16", shard_size=4)
    assert added.encoded == 5 and added.cache_documents == 15


def test_duplicate_ids_error_skip_replace(tmp_path):
    encode_corpus(str(write_jsonl(tmp_path / "a.jsonl", rt_docs(6))), tmp_path / "cache", layer=2, codec="fp32",
                  shard_size=100)
    overlap = write_jsonl(tmp_path / "b.jsonl", rt_docs(4, start=4))  # ids 4, 5 already cached
    before = folder_bytes(tmp_path / "cache")
    with pytest.raises(InputError, match=r"b.jsonl:1: document 'rt-\d+' is already in .*--on-duplicate skip"):
        encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32")
    assert folder_bytes(tmp_path / "cache") == before
    s = encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32", on_duplicate="skip")
    assert (s.encoded, s.already_in_cache, s.cache_documents) == (2, 2, 8)
    s = encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32", on_duplicate="replace")
    assert s.encoded == 4 and s.cache_documents == 8


@pytest.mark.parametrize("lines, message", [
    (['{"id": "a", "text": "fine"}', '{"id": "b", "text": "broken'], r"bad.jsonl:2: malformed JSON"),
    (['{"id": "a", "text": "fine"}', '{"id": "b", "text": "   "}'], r"bad.jsonl:2: document 'b' has an empty text"),
    (['{"id": "a", "text": "one"}', '{"id": "a", "text": "two"}'], r"bad.jsonl:2: id 'a' already used at .*bad.jsonl:1"),
    (['{"text": "no id"}'], r"bad.jsonl:1: the document has no `id`"),
])
def test_bad_corpus_is_refused_and_the_cache_left_intact(tmp_path, lines, message):
    encode_corpus(str(write_jsonl(tmp_path / "ok.jsonl", rt_docs(3))), tmp_path / "cache", layer=1, codec="fp32")
    before = folder_bytes(tmp_path / "cache")
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=message):
        encode_corpus(str(tmp_path / "bad.jsonl"), tmp_path / "cache", layer=1, codec="fp32")
    assert folder_bytes(tmp_path / "cache") == before


def test_long_documents_are_truncated_and_counted(tmp_path):
    docs = rt_docs(3) + [{"id": "long", "text": "word " * 200}]
    s = encode_corpus(str(write_jsonl(tmp_path / "c.jsonl", docs)), tmp_path / "cache", layer=1, codec="fp32",
                      max_length=32)
    assert s.truncated == 1 and s.truncated_ids == ["long"]
    reader = CacheReader(tmp_path / "cache")
    assert reader.get("long").shape[0] == 32 and reader.manifest["counts"]["truncated"] == 1


def test_unknown_codec_and_other_layer_are_refused(tmp_path):
    corpus = str(write_jsonl(tmp_path / "c.jsonl", rt_docs(3)))
    with pytest.raises(CodecError, match="int7"):
        encode_corpus(corpus, tmp_path / "new", codec="int7+zstd")
    assert not (tmp_path / "new").exists()
    encode_corpus(corpus, tmp_path / "cache", layer=1, codec="fp32")
    before = folder_bytes(tmp_path / "cache")
    more = str(write_jsonl(tmp_path / "m.jsonl", rt_docs(2, start=3)))
    with pytest.raises(ManifestMismatchError, match="layer"):
        encode_corpus(more, tmp_path / "cache", layer=2, codec="fp32")
    with pytest.raises(ManifestMismatchError, match="codec"):
        encode_corpus(more, tmp_path / "cache", layer=1, codec="fp16")
    assert folder_bytes(tmp_path / "cache") == before


def test_csv_and_text_pairs(tmp_path, minilm):
    (tmp_path / "c.csv").write_text('id,text,text_pair\np1,"A good film, truly.",It was fine.\np2,Bad.,Worse.\n')
    s = encode_corpus(str(tmp_path / "c.csv"), tmp_path / "cache", layer=2, codec="fp32")
    reader = CacheReader(tmp_path / "cache")
    assert s.encoded == 2 and reader.ids() == ["p1", "p2"]
    pair = minilm.tokenizer("Bad.", "Worse.", return_tensors="pt")  # [CLS] bad . [SEP] worse . [SEP]
    assert pair["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1]
    with torch.no_grad():
        want = minilm.model(**pair, output_hidden_states=True).hidden_states[2][0].numpy()
    np.testing.assert_allclose(reader.get("p2"), want, atol=1e-5)


def _encode_cmd(corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "erpack", "encode", str(corpus), "-o", str(out), "--layer", "3",
            "--codec", "int8c+zstd:3", "--shard-size", "4", "--batch-size", "3"]


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_equals_uninterrupted_run(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", rt_docs(40))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(_encode_cmd(corpus, tmp_path / "whole"), check=True, env=env, capture_output=True)
    rng = random.Random(7)
    killed = 0
    for _ in range(4):
        proc = subprocess.Popen(_encode_cmd(corpus, tmp_path / "killed"), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 6.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed >= 1
    done = subprocess.run(_encode_cmd(corpus, tmp_path / "killed") + ["--json"], env=env, capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["cache_documents"] == 40
    verify = subprocess.run([sys.executable, "-m", "erpack", "verify", str(tmp_path / "killed")], capture_output=True)
    assert verify.returncode == 0, verify.stdout
    whole, resumed = CacheReader(tmp_path / "whole"), CacheReader(tmp_path / "killed")
    assert whole.ids() == resumed.ids()
    for doc_id in whole.ids():
        a, sa = whole.get_encoded(doc_id)
        b, sb = resumed.get_encoded(doc_id)
        assert sa == sb and bytes(a) == bytes(b), doc_id
