"""The held-out measurement of trained codecs (erpack.experiments.tc_table, tools/tc_table.py) on tiny data.

A small fitted codec that reads token ids (`tmean`: fp16 of x minus a fitted per-token mean) stands in
for `tc` here, registered for the length of a test only.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from erpack.codecs import Pipeline, registry
from erpack.codecs.base import HEADER, ArrayCodec, param
from erpack.codecs.state import FittedState
from erpack.compress import measure
from erpack.errors import CodecError, InputError
from erpack.experiments.tc_table import deal, measure_held_out, merge_rows, target_checks, token_id_bytes
from tests.experiments.rows import run

ROOT = Path(__file__).resolve().parents[2]
H, V = 16, 50


@dataclass(frozen=True)
class TokenMean(ArrayCodec):
    """fp16 of x minus a per-token-id mean fitted on a sample (ids >= vocab: no mean)."""

    codec_id = "tmean"
    tag = 250
    fitted = True
    needs_tokens = True
    primary = "vocab"
    vocab: int = param(V, "token ids with a fitted mean")

    def fit(self, records, *, context=None, seed=0):
        sums, counts = np.zeros((self.vocab, records[0][0].shape[1])), np.zeros(self.vocab)
        for x, ids in records:
            keep = ids < self.vocab
            np.add.at(sums, ids[keep], x[keep])
            np.add.at(counts, ids[keep], 1)
        mean = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        return self._attach(FittedState("tmean", 1, {"context": context, "seed": seed}, {"mean": mean}))

    def with_state(self, state):
        return self._attach(state)

    def body_size(self, T, H):
        return 2 * T * H

    def _mean(self, tokens, H):
        table = self.state.arrays["mean"]
        out = np.zeros((len(tokens), H), np.float32)
        keep = tokens < len(table)
        out[keep] = table[tokens[keep]]
        return out

    def _encode_tokens(self, x, tokens):
        return (x - self._mean(tokens, x.shape[1])).astype("<f2").tobytes()

    def _decode_tokens(self, body, out, tokens):
        out[...] = np.frombuffer(body, "<f2").reshape(out.shape).astype(np.float32) + self._mean(tokens, out.shape[1])


@pytest.fixture
def tmean(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "tmean", TokenMean)
    return "tmean"


def records(n: int, seed: int = 0, big_id: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """n records of 3-40 tokens: a per-token-id vector (the same table for every seed) plus small noise."""
    table = np.random.default_rng(99).normal(0, 4, (V, H)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = rng.integers(0, V, int(rng.integers(3, 40)))
        x = (table[ids] + rng.normal(0, 0.1, (len(ids), H))).astype(np.float32)
        if big_id:
            ids[0] = 70000
        out.append((x, ids))
    return out


def test_token_ids_cost_two_bytes_a_token_below_65536_else_four():
    assert token_id_bytes(np.array([0, 65535, 7])) == 6
    assert token_id_bytes(np.array([0, 65536, 7])) == 12


def test_deal_puts_even_places_in_the_fit_half_and_odd_places_in_the_measured_half():
    assert deal(list(range(7))) == ([0, 2, 4, 6], [1, 3, 5])


def test_a_baseline_counts_its_blobs_and_the_token_ids_and_no_state():
    test = records(12, seed=1)
    row = measure_held_out("int8z", records(12), test, repeat=1)
    values = sum(x.size for x, _ in test)
    blobs = sum(len(Pipeline.from_spec("int8z").encode(x)) for x, _ in test)
    assert row["blob_bytes"] == blobs and row["state_bytes"] == 0 and row["fit_docs"] == 0
    assert row["token_id_bytes"] == 2 * sum(len(t) for _, t in test)
    assert row["bits_token_ids"] == pytest.approx(16 / H)
    assert row["bits_per_value"] == row["bits_without_state"] == pytest.approx(8 * (blobs + row["token_id_bytes"]) / values)
    assert row["sqnr_db"] > 35 and row["batch_decode_MBps"] > 0


def test_a_record_with_an_id_past_u16_costs_four_bytes_a_token():
    test = records(4, seed=1, big_id=True)
    row = measure_held_out("int4z", [], test, repeat=1)
    assert row["token_id_bytes"] == 4 * sum(len(t) for _, t in test)


def test_a_fitted_codec_is_fitted_on_one_half_and_its_state_amortized_over_the_other(tmean):
    fit, test = records(30), records(20, seed=1)
    row = measure_held_out(tmean, fit, test, context={"model": "m", "layer": 3}, repeat=1)
    state = Pipeline.from_spec(tmean).fit(fit, context={"model": "m", "layer": 3}).state
    values = sum(x.size for x, _ in test)
    assert row["fitted"] and row["fit_docs"] == 30 and row["fit_tokens"] == sum(len(x) for x, _ in fit)
    assert row["state_bytes"] == len(state.to_bytes())
    assert row["blob_bytes"] == sum(HEADER.size + 2 * x.size for x, _ in test)
    assert row["bits_per_value"] - row["bits_without_state"] == pytest.approx(8 * row["state_bytes"] / values)
    assert row["bits_state"] == pytest.approx(8 * row["state_bytes"] / values)
    assert row["sqnr_db"] > 60  # the residual (noise 0.1 against 4) in fp16


def test_measure_hands_each_record_its_token_ids_in_every_encode_and_decode(tmean, monkeypatch):
    fit, test = records(10), records(40, seed=1)
    pipe = Pipeline.from_spec(tmean).fit(fit)
    seen = {"enc": [], "dec": []}
    enc, dec = TokenMean._encode_tokens, TokenMean._decode_tokens
    def encode(self, x, t):
        body = enc(self, x, t)
        seen["enc"].append((t.tobytes(), body))
        return body

    monkeypatch.setattr(TokenMean, "_encode_tokens", encode)
    monkeypatch.setattr(TokenMean, "_decode_tokens", lambda self, b, o, t: seen["dec"].append((t.tobytes(), bytes(b)))
                        or dec(self, b, o, t))
    row = measure(pipe, [x for x, _ in test], tokens=[t for _, t in test], batch_size=8)
    assert len(seen["enc"]) == 41  # the warm-up of the first record, then each record once
    # each blob is decoded with the ids it was encoded with: record by record, in batches, for the quality
    assert sorted(seen["dec"]) == sorted(seen["enc"] + 2 * seen["enc"][1:])
    assert row.sqnr_db > 60
    with pytest.raises(InputError, match="each record's token ids"):
        measure(pipe, [x for x, _ in test])
    with pytest.raises(InputError, match="3 token id arrays for 40 records"):
        measure(pipe, [x for x, _ in test], tokens=[t for _, t in test[:3]])


def test_a_spec_that_cannot_be_fitted_is_an_error_the_caller_sees(tmean):
    with pytest.raises(CodecError, match="unknown codec 'nosuch'"):
        measure_held_out("nosuch:snr=19", records(3), records(3), repeat=1)


def _row(spec, bits, sqnr=19.0, no_state=None, dec=2000.0, fitted=True):
    return {"spec": spec, "pipeline": spec, "fitted": fitted, "bits_per_value": bits,
            "bits_without_state": bits if no_state is None else no_state, "sqnr_db": sqnr, "batch_decode_MBps": dec}


def _result(model, rows):
    return {"set": {"model": model, "dataset": "rotten_tomatoes"}, "rows": rows}


def test_the_checks_hold_each_trained_codec_to_its_target_on_each_set():
    res = [_result("minilm", [_row("int4z", 3.6, 18.9, fitted=False), _row("int8z", 7.1, 40.9, fitted=False),
                              _row("tc:snr=19", 2.3, 18.86), _row("tc:snr=41", 6.5, 40.8),
                              _row("tc:bits=2", 2.1, 18.0, no_state=2.04, dec=900.0),
                              {"spec": "tc:bits=1.5", "error": "1.5 bits cannot be met; ask for tc:bits=1.7"}]),
           _result("mpnet", [_row("int4z", 3.5, 19.04, fitted=False), _row("tc:snr=19", 2.79, 18.96)])]
    checks = {(c["target"], c["set"].split("/")[0], c["spec"]): c for c in target_checks(res)}
    assert checks["19 dB", "minilm", "tc:snr=19"]["ok"]  # 2.3 <= 2/3 x 3.6 = 2.4
    c41 = checks["41 dB", "minilm", "tc:snr=41"]  # 6.5 > 0.9 x 7.1 and 40.8 dB < 40.9 - 0.05
    assert c41["ok"] is False and len(c41["why"]) == 2 and "6.390" in c41["why"][0]
    assert checks["2 bits", "minilm", "tc:bits=2"]["ok"]  # 2.04 without the state: within 0.05
    assert checks["1.5 bits", "minilm", "tc:bits=1.5"]["ok"] is None
    assert "ask for tc:bits=1.7" in checks["1.5 bits", "minilm", "tc:bits=1.5"]["why"][0]
    assert checks["decode", "minilm", "tc:bits=2"]["ok"] is False
    assert ("decode", "minilm", "int4z") not in checks  # the decode target is the trained codecs'
    assert checks["19 dB", "mpnet", "tc:snr=19"]["ok"]  # 2.79 <= 0.8 x 3.5 = 2.8, 18.96 dB >= 19 - 0.05
    assert checks["41 dB", "mpnet", "tc:snr=41"]["ok"] is None


def test_merge_keeps_the_rows_of_specs_not_measured_again():
    old = [{"spec": "int4z", "v": 1}, {"spec": "tc:snr=19", "v": 1}]
    assert merge_rows(old, [{"spec": "tc:snr=19", "v": 2}]) == [{"spec": "int4z", "v": 1}, {"spec": "tc:snr=19", "v": 2}]


def _tool(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "tc_table.py"), *map(str, args)], capture_output=True,
                          text=True, env=env)


def _set_result(folder: Path) -> list[dict]:
    """A result file of one set in `folder` (int4z and int8z measured on tiny data, tc an error row)."""
    fit, test = records(6), records(6, seed=1)
    rows = [measure_held_out(s, fit, test, repeat=1) for s in ("int4z", "int8z")]
    rows.append({"spec": "tc:snr=19", "error": "unknown codec 'tc'"})
    result = {"command": "python tools/tc_table.py --quick", "machine": "a CPU", "versions": "numpy", "date": "2026-12-01",
              "seconds": 3.0, "load_average": [0, 0], "rows": rows,
              "set": {"model": "minilm", "layer": 3, "dataset": "rotten_tomatoes", "docs": 12, "fit_docs": 6,
                      "fit_tokens": 100, "docs_measured": 6, "tokens_measured": 90, "hidden": H}}
    folder.mkdir()
    (folder / "minilm-k3-rotten_tomatoes.json").write_text(json.dumps(result))
    return rows


def test_the_tool_renders_the_page_from_its_result_files(tmp_path):
    rows = _set_result(tmp_path / "tc")
    out = _tool("--render-only", "--out", tmp_path / "tc", "--doc", tmp_path / "page.md")
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "page.md").read_text()
    assert "Made by `python tools/tc_table.py --render-only`" in page
    assert "- `python tools/tc_table.py --quick` on a CPU (numpy), 2026-12-01" in page
    assert f"| `int4z (`int4c:19+zstd:3`)` | {rows[0]['bits_per_value']:.3f} |" in page
    assert "| 19 dB | minilm/rotten_tomatoes | `tc:snr=19` | not measured | - | tc:snr=19: unknown codec 'tc' |" in page
    assert json.loads(out.stdout.splitlines()[-1])["checks"][0]["ok"] is None


def test_the_tool_pairs_a_training_grid_against_the_int4z_cache(tmp_path):
    _set_result(tmp_path / "tc")
    work = tmp_path / "work"
    work.mkdir()
    grid = [run("recycled", s, a, mode=m, codec=c) for s in (0, 1, 2) for m, c, a in
            (("upper", "int4z", 0.80), ("upper", "tc19", 0.798), ("upper", "tc2", 0.78),
             ("adapter", "int4z", 0.80), ("adapter", "tc19", 0.79), ("adapter", "tc2", 0.795))]
    (work / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in grid))
    out = _tool("--accuracy", work, "--out", tmp_path / "tc", "--doc", tmp_path / "page.md",
                "--train-command", "python tools/train_table.py --codecs int4z,tc19,tc2")
    assert out.returncode == 0, out.stderr
    acc = json.loads((tmp_path / "tc" / "accuracy.json").read_text())
    verdict = {(c["codec"], c["mode"]): c["ok"] for c in acc["checks"]}
    assert verdict == {("tc19", "upper"): True, ("tc19", "adapter"): False,  # -1.0 point: past 0.5
                       ("tc2", "upper"): False, ("tc2", "adapter"): True}   # -2.0 points: past 1
    page = (tmp_path / "page.md").read_text()
    assert "## Task accuracy against the int4z cache" in page
    assert "| m k=3/rt | `tc19` | adapter | 0,1,2 | 79.00 ± 0.00 | 80.00 ± 0.00 | -1.00 (-1.00..-1.00) | 0.5 | **no** |" in page
