"""`erpack encode` on the real MiniLM: values, resume, append, duplicates, bad input, SIGKILL."""

from __future__ import annotations

import json
import os
import random
import resource
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
            # every record holds its input ids, which decode back to the document's tokens
            tokens = reader.get_tokens(doc["id"])
            assert tokens.tolist() == ids["input_ids"][0].tolist()
            assert minilm.tokenizer.decode(tokens, skip_special_tokens=True) == minilm.tokenizer.decode(
                minilm.tokenizer(doc["text"])["input_ids"], skip_special_tokens=True)
    assert worst <= 1e-5, worst
    assert reader.stats().token_id_bytes == 2 * reader.manifest["counts"]["tokens"]  # u16: MiniLM's 30,522 ids


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


def test_append_is_said(tmp_path, capsys):
    """encode on a cache that holds documents says it appended: a line, and `appended` in the JSON."""
    from erpack.cli import main

    out = str(tmp_path / "cache")
    first = write_jsonl(tmp_path / "a.jsonl", rt_docs(4))
    assert main(["encode", str(first), "-o", out, "--layer", "1", "--codec", "fp16", "--json"]) == 0
    fresh = capsys.readouterr().out.splitlines()
    assert json.loads(fresh[-1])["appended"] is False and not any(x.startswith("appended") for x in fresh)
    more = write_jsonl(tmp_path / "b.jsonl", rt_docs(3, start=4))
    assert main(["encode", str(more), "-o", out, "--layer", "1", "--codec", "fp16", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    d = json.loads(lines[-1])
    assert d["appended"] is True and d["existing_documents"] == 4 and d["cache_documents"] == 7
    assert "appended     3 documents to an existing cache of 4" in lines


def test_duplicate_ids_unchanged_skip_replace(tmp_path):
    encode_corpus(str(write_jsonl(tmp_path / "a.jsonl", rt_docs(6))), tmp_path / "cache", layer=2, codec="fp32",
                  shard_size=100)
    overlap = write_jsonl(tmp_path / "b.jsonl", rt_docs(4, start=4))  # ids 4, 5 already cached, same texts
    s = encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32")
    assert (s.encoded, s.unchanged, s.already_in_cache, s.cache_documents) == (2, 2, 2, 8)
    s = encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32", on_duplicate="skip")
    assert (s.encoded, s.already_in_cache, s.cache_documents) == (0, 4, 8)
    s = encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32", on_duplicate="replace")
    assert (s.encoded, s.replaced, s.cache_documents) == (4, 4, 8)


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


def test_long_documents_are_truncated_and_counted(tmp_path, minilm):
    docs = rt_docs(3) + [{"id": "long", "text": "word " * 200}]
    s = encode_corpus(str(write_jsonl(tmp_path / "c.jsonl", docs)), tmp_path / "cache", layer=1, codec="fp32",
                      max_length=32)
    assert s.truncated == 1 and s.truncated_ids == ["long"]
    reader = CacheReader(tmp_path / "cache")
    assert reader.get("long").shape[0] == 32 and reader.manifest["counts"]["truncated"] == 1
    ids = reader.get_tokens("long")  # the 32 tokens the record holds: [CLS] word x 30 [SEP]
    tok = minilm.tokenizer
    assert tok.convert_ids_to_tokens(ids.tolist()) == ["[CLS]"] + ["word"] * 30 + ["[SEP]"]


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


# ---- changed text under a cached id (issue 17, point 6) -------------------------------------------
def test_changed_text_under_a_cached_id_stops_naming_it_and_writes_nothing(tmp_path):
    docs = rt_docs(6)
    encode_corpus(str(write_jsonl(tmp_path / "a.jsonl", docs)), tmp_path / "cache", layer=2, codec="fp32", shard_size=3)
    before = folder_bytes(tmp_path / "cache")
    changed = [dict(d) for d in docs]
    changed[4]["text"] = "An entirely different review of another film."
    corpus = write_jsonl(tmp_path / "b.jsonl", changed)  # every id cached: the resume path
    with pytest.raises(InputError, match=rf"b.jsonl:5: document '{docs[4]['id']}' changed since it was encoded "
                       r"into .*--on-duplicate replace"):
        encode_corpus(str(corpus), tmp_path / "cache", layer=2, codec="fp32", shard_size=3)
    assert folder_bytes(tmp_path / "cache") == before


def test_same_text_under_a_cached_id_is_skipped_as_unchanged(tmp_path):
    encode_corpus(str(write_jsonl(tmp_path / "a.jsonl", rt_docs(4))), tmp_path / "cache", layer=2, codec="fp32")
    overlap = write_jsonl(tmp_path / "b.jsonl", rt_docs(4, start=2))  # 2 cached, 2 new, one shard
    s = encode_corpus(str(overlap), tmp_path / "cache", layer=2, codec="fp32")
    assert (s.encoded, s.unchanged, s.already_in_cache, s.cache_documents, s.warnings) == (2, 2, 2, 6, [])


def test_replace_encodes_the_new_text_and_skip_keeps_the_old_one_with_a_warning(tmp_path, minilm):
    docs = rt_docs(3)
    encode_corpus(str(write_jsonl(tmp_path / "a.jsonl", docs)), tmp_path / "cache", layer=2, codec="fp32")
    old = CacheReader(tmp_path / "cache").get(docs[1]["id"])
    docs[1] = {"id": docs[1]["id"], "text": "A new text for a cached id."}
    corpus = str(write_jsonl(tmp_path / "b.jsonl", docs))
    s = encode_corpus(corpus, tmp_path / "cache", layer=2, codec="fp32", on_duplicate="skip")
    assert (s.encoded, s.unchanged, s.kept_changed, s.kept_changed_ids) == (0, 2, 1, [docs[1]["id"]])
    assert "kept stale" in s.warnings[0]
    np.testing.assert_array_equal(CacheReader(tmp_path / "cache").get(docs[1]["id"]), old)
    s = encode_corpus(corpus, tmp_path / "cache", layer=2, codec="fp32", on_duplicate="replace")
    assert (s.encoded, s.replaced, s.cache_documents) == (3, 3, 3)
    with torch.no_grad():
        ids = minilm.tokenizer(docs[1]["text"], return_tensors="pt")
        want = minilm.model(**ids, output_hidden_states=True).hidden_states[2][0].numpy()
    np.testing.assert_allclose(CacheReader(tmp_path / "cache").get(docs[1]["id"]), want, atol=1e-5)
    again = encode_corpus(corpus, tmp_path / "cache", layer=2, codec="fp32")  # now the cache agrees
    assert (again.encoded, again.unchanged) == (0, 3)


def test_a_cached_record_without_a_token_hash_is_kept_with_a_warning(tmp_path, minilm):
    from erpack.codecs import Pipeline
    from erpack.encode import cache_meta
    from erpack.store import CacheWriter

    docs = rt_docs(2)
    with CacheWriter(tmp_path / "cache", meta=cache_meta(minilm, 1, 512), codec=Pipeline.from_spec("fp32")) as w:
        w.commit_shard([(docs[0]["id"], np.zeros((3, 384), np.float32))])  # no token_hashes: unknown
    s = encode_corpus(str(write_jsonl(tmp_path / "c.jsonl", docs)), tmp_path / "cache", layer=1, codec="fp32")
    assert (s.encoded, s.unverified, s.unchanged) == (1, 1, 0)
    assert "no token hash" in s.warnings[0] and "--on-duplicate replace" in s.warnings[0]


def test_token_hash_depends_on_tokens_and_truncation():
    from erpack.tokens import token_hash

    base = token_hash([101, 7, 102])
    assert base == token_hash([101, 7, 102]) and 0 < base < 2**64
    assert len({base, token_hash([101, 8, 102]), token_hash([101, 7, 102], [0, 0, 0]),
                token_hash([101, 7, 102], truncated=True)}) == 4


# ---- corpus errors (issue 17, point 8) ------------------------------------------------------------
@pytest.mark.parametrize("name, content, where", [
    ("bad.jsonl", b'{"id": "a", "text": "fine"}\n{"id": "b", "text": "caf\xe9"}\n', "bad.jsonl:2"),
    ("bad.csv", b'id,text\na,fine\nb,fine\nc,caf\xe9 cr\xe8me\n', "bad.csv:4"),
])
def test_invalid_utf8_names_file_and_line(tmp_path, name, content, where):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=rf"{where}: not valid UTF-8 \(byte 0xe9"):
        encode_corpus(str(tmp_path / name), tmp_path / "cache", layer=1, codec="fp32")
    assert not (tmp_path / "cache").exists()


def test_csv_without_id_column_gets_file_ids_and_a_warning(tmp_path):
    (tmp_path / "one.csv").write_text("text\nA good film.\nA bad film.\n")
    (tmp_path / "two.csv").write_text("text\nAnother film.\n")
    s = encode_corpus(str(tmp_path / "one.csv"), tmp_path / "cache", layer=1, codec="fp32")
    assert len(s.warnings) == 1 and "one.csv has no `id` column" in s.warnings[0] and "--id-column" in s.warnings[0]
    s = encode_corpus(str(tmp_path / "two.csv"), tmp_path / "cache", layer=1, codec="fp32")
    assert (s.encoded, s.cache_documents) == (1, 3)  # no collision with one.csv's first row
    assert CacheReader(tmp_path / "cache").ids() == ["one:0", "one:1", "two:0"]


def test_id_column_names_the_ids(tmp_path):
    (tmp_path / "c.csv").write_text("key,text\nk1,A good film.\nk2,A bad film.\n")
    s = encode_corpus(str(tmp_path / "c.csv"), tmp_path / "cache", layer=1, codec="fp32", id_column="key")
    assert s.warnings == [] and CacheReader(tmp_path / "cache").ids() == ["k1", "k2"]
    write_jsonl(tmp_path / "c.jsonl", [{"key": "k3", "text": "Fine."}])
    encode_corpus(str(tmp_path / "c.jsonl"), tmp_path / "cache", layer=1, codec="fp32", id_column="key")
    with pytest.raises(InputError, match=r"c.csv: no column 'doc' for ids \(--id-column\)"):
        encode_corpus(str(tmp_path / "c.csv"), tmp_path / "cache", layer=1, codec="fp32", id_column="doc")


def test_a_long_document_is_cut_before_tokenizing(minilm):
    from erpack.tokens import bounded_inputs

    text = "a long review of a film " * 420_000  # 10 MB on one line
    cut, pair = bounded_inputs(minilm.tokenizer, text, None, 512)
    assert pair is None and 512 * 64 <= len(cut) < 100_000 and text.startswith(cut)
    long_pair = bounded_inputs(minilm.tokenizer, "A short question?", text, 512)
    assert long_pair[0] == "A short question?" and len(long_pair[1]) < 100_000
    nospace = "x" * 1_000_000  # one word: no whole-word prefix to cut at, so kept whole
    assert bounded_inputs(minilm.tokenizer, nospace, None, 512)[0] == nospace


@pytest.mark.slow
def test_a_10mb_document_encodes_like_its_first_100kb(tmp_path):
    text = " ".join(f"word{i % 97} is here" for i in range(800_000))[:10_000_000]
    docs = [{"id": "big", "text": text}, {"id": "small", "text": text[:100_000]}]
    s = encode_corpus(str(write_jsonl(tmp_path / "c.jsonl", docs)), tmp_path / "cache", layer=2, codec="fp32")
    assert s.truncated == 2 and sorted(s.truncated_ids) == ["big", "small"]
    r = CacheReader(tmp_path / "cache")
    assert r.info("big")["truncated"] and r.get("big").shape[0] == 512
    np.testing.assert_array_equal(r.get("big"), r.get("small"))


# ---- faults seen from the command line (issue 17, point 8) ----------------------------------------
def _erpack(*args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "erpack", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600, **kw)


def _short_then_long(tmp_path: Path) -> Path:
    """8 documents: a first shard of 4 short ones, then 4 of about 300 tokens (about 1 MB in fp16)."""
    short = rt_docs(4)
    long = [{"id": f"long-{i}", "text": " ".join(d["text"] for d in rt_docs(12, start=12 * i + 4))} for i in range(4)]
    return write_jsonl(tmp_path / "c.jsonl", short + long)


def _error_line(stderr: str) -> str:
    """The line that says `erpack encode: error:`, which must start a line (not follow a progress bar)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.split("\n") if line.startswith("erpack encode: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _resumes(corpus: Path, out: Path) -> None:
    done = _erpack("encode", corpus, "-o", out, "--layer", 2, "--codec", "fp16", "--shard-size", 4, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["cache_documents"] == 8
    assert _erpack("verify", out).returncode == 0


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.slow
def test_a_file_size_limit_during_encode_is_a_message_and_rerunning_resumes(tmp_path):
    corpus, out = _short_then_long(tmp_path), tmp_path / "cache"
    failed = _erpack("encode", corpus, "-o", out, "--layer", 2, "--codec", "fp16", "--shard-size", 4,
                     preexec_fn=_limit_file_size(400_000))
    assert failed.returncode == 2
    line = _error_line(failed.stderr)
    assert f"could not write {out / 'shard-000001.ers.tmp'}: the file grew past the size limit" in line
    assert "documents committed before it are intact" in line and "rerun the same command to resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-000000.ers"]
    _resumes(corpus, out)


@pytest.mark.slow
def test_a_full_disk_during_encode_is_a_message_and_rerunning_resumes(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True)
    if mount.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.decode().strip()}")
    try:
        corpus, out = _short_then_long(tmp_path), mnt / "cache"
        failed = _erpack("encode", corpus, "-o", out, "--layer", 2, "--codec", "fp16", "--shard-size", 4)
        assert failed.returncode == 2
        line = _error_line(failed.stderr)
        assert f"could not write {out / 'shard-000001.ers.tmp'}: the disk is full" in line
        assert "rerun the same command to resume" in line
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        _resumes(corpus, out)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_changed_document_from_the_command_line_exits_2_on_a_line_of_its_own(tmp_path):
    docs = rt_docs(3)
    write_jsonl(tmp_path / "a.jsonl", docs)
    assert _erpack("encode", tmp_path / "a.jsonl", "-o", tmp_path / "cache", "--layer", 1).returncode == 0
    docs[2] = {"id": docs[2]["id"], "text": "Changed."}
    failed = _erpack("encode", write_jsonl(tmp_path / "b.jsonl", docs + rt_docs(1, start=3)), "-o",
                     tmp_path / "cache", "--layer", 1)
    assert failed.returncode == 2
    line = _error_line(failed.stderr)
    assert f"b.jsonl:3: document '{docs[2]['id']}' changed" in line and "--on-duplicate replace" in line


def test_generated_ids_are_warned_in_human_and_json_output(tmp_path):
    (tmp_path / "reviews.csv").write_text("text\nA good film.\nA bad film.\n")
    done = _erpack("encode", tmp_path / "reviews.csv", "-o", tmp_path / "cache", "--layer", 1, "--json")
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout.splitlines()[-1])["warnings"]
    assert len(warnings) == 1 and "reviews.csv has no `id` column" in warnings[0]
    assert f"warning      {warnings[0]}" in done.stdout.splitlines()
    (tmp_path / "keyed.csv").write_text("key,text\nk1,A fine film.\n")
    done = _erpack("encode", tmp_path / "keyed.csv", "-o", tmp_path / "cache", "--layer", 1, "--id-column", "key", "--json")
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["warnings"] == []
    assert CacheReader(tmp_path / "cache").ids() == ["reviews:0", "reviews:1", "k1"]
