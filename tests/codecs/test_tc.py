"""The tc codec: fitted on a sample, targets met on held-out records, exact batched decode, and the
errors a missing or damaged state, missing token ids, a garbled blob or an unreachable budget raise."""

from __future__ import annotations

import numpy as np
import pytest

from erpack.codecs import Pipeline, rans
from erpack.codecs.base import HEADER
from erpack.codecs.metrics import Meter
from erpack.codecs.state import FittedState
from erpack.errors import CodecError

H = 32


def corpus(n: int, seed: int = 0, H: int = H, V: int = 80):
    """Records shaped like a layer's activations of text: a per-token component (Zipf-distributed
    token ids), channel widths spread over a decade, correlated noise, a loud first token."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(99).normal(0, 1, (V, H))
    mix = np.random.default_rng(98).normal(0, 1, (H, H)) * np.exp(np.random.default_rng(97).normal(-0.5, 0.5, H))
    out = []
    for _ in range(n):
        T = int(rng.integers(1, 30))
        ids = np.minimum(rng.zipf(1.5, T), V) - 1
        x = base[ids] + rng.laplace(0, 0.4, (T, H)) @ mix
        x[0] *= 2
        out.append((x.astype(np.float32), ids.astype(np.int64)))
    return out


FIT = corpus(300)
TEST = corpus(100, seed=1)


@pytest.fixture(scope="module")
def tc19():
    return Pipeline.from_spec("tc19").fit(FIT, context={"model": {"name": "synthetic"}, "layer": 3}, seed=0)


def measure(pipe, records):
    meter, tokens = Meter(), 0
    for x, ids in records:
        blob = pipe.encode(x, ids)
        meter.add(x, pipe.decode(blob, x.shape, tokens=ids), len(blob))
        tokens += len(ids)
    return meter, meter.bits_per_value + 16 * tokens / meter.values


def test_round_trip_meets_snr_on_held_out(tc19):
    meter, _ = measure(tc19, TEST)
    assert 18.3 <= meter.sqnr_db <= 20.0, meter.sqnr_db
    assert tc19.spec == "tc:19" and tc19.fitted and tc19.needs_tokens
    meta = tc19.state.meta
    assert meta["context"] == {"model": {"name": "synthetic"}, "layer": 3}
    assert meta["sample"] == {"records": 300, "tokens": sum(len(i) for _, i in FIT)}
    assert meta["params"]["snr"] == 19.0


@pytest.mark.parametrize("bits", [2.0, 1.5])
def test_bits_target_within_005(bits):
    fit, test = corpus(900, seed=2), corpus(300, seed=3)
    pipe = Pipeline.from_spec(f"tc:bits={bits}").fit(fit)
    _, got = measure(pipe, test)
    assert abs(got - bits) <= 0.05, got


def test_fit_is_deterministic(tc19):
    again = Pipeline.from_spec("tc19").fit(FIT, context={"model": {"name": "synthetic"}, "layer": 3}, seed=0)
    assert again.state.sha256 == tc19.state.sha256
    x, ids = TEST[0]
    assert again.encode(x, ids) == tc19.encode(x, ids)


def test_state_round_trips_through_bytes(tc19):
    state = FittedState.from_bytes(tc19.state.to_bytes())
    reader = Pipeline.from_config(tc19.get_config(), state=state)
    for x, ids in TEST[:5]:
        blob = tc19.encode(x, ids)
        assert reader.encode(x, ids) == blob
        assert np.array_equal(reader.decode(blob, x.shape, tokens=ids), tc19.decode(blob, x.shape, tokens=ids))


def test_decode_batch_equals_record_by_record(tc19):
    records = TEST[:7] + [corpus(1, seed=5)[0]]
    blobs = [tc19.encode(x, ids) for x, ids in records]
    shapes = [x.shape for x, _ in records]
    out = tc19.decode_batch(blobs, shapes, tokens=[ids for _, ids in records])
    for r, ((x, ids), blob) in enumerate(zip(records, blobs)):
        T = len(ids)
        assert np.array_equal(out[r, :T].view(np.uint32), tc19.decode(blob, x.shape, tokens=ids).view(np.uint32))
        assert not out[r, T:].any()


def test_odd_sizes_and_unknown_tokens(tc19):
    rng = np.random.default_rng(4)
    for T in (1, 2, 70):
        x = rng.normal(0, 1, (T, H)).astype(np.float32)
        ids = rng.integers(0, 2**32 - 1, T)  # ids the table never saw: the mean predicts them
        y = tc19.decode(tc19.encode(x, ids), x.shape, tokens=ids)
        assert y.shape == (T, H) and np.isfinite(y).all()


def test_huge_tokens_are_coarsened_not_lost(tc19):
    """A token whose codes would break the exact-product bound is coded with a coarser step
    (2^e), listed in the blob; the others keep theirs."""
    x, ids = (a.copy() for a in TEST[1])
    x[1] *= 1e7
    blob = tc19.encode(x, ids)
    assert blob[HEADER.size] >= 1  # coarsened tokens listed
    y = tc19.decode(blob, x.shape, tokens=ids)
    assert np.linalg.norm(y[1] - x[1]) < 0.3 * np.linalg.norm(x[1])
    plain = tc19.decode(tc19.encode(TEST[1][0], ids), x.shape, tokens=ids)
    assert np.array_equal(y[2:], plain[2:])


def test_decoder_refuses_blob_that_breaks_the_bound(tc19):
    m = tc19.array_codec.model
    x, ids = TEST[2]
    q = np.full((len(ids), m.K), rans.QMAX, dtype=np.int32)  # sum |q| max|B| far above 2^24
    enc, _ = rans.kernels()
    buf = np.empty(rans.max_stream_bytes(q.size), np.uint8)
    start = enc(q, m.shift, m.lim, m.freq, m.cum, buf)
    blob = tc19.encode(x, ids)[:HEADER.size] + b"\x00" + buf[start:].tobytes()
    with pytest.raises(CodecError, match="exact-product bound"):
        tc19.decode(blob, x.shape, tokens=ids)


def test_garbled_blobs_are_refused(tc19):
    x, ids = TEST[3]
    blob = tc19.encode(x, ids)
    for bad in (blob[:-1], blob[:-3] + bytes([blob[-3] ^ 0x40]) + blob[-2:], blob + b"\x00"):
        with pytest.raises(CodecError):
            tc19.decode(bad, x.shape, tokens=ids)


def test_needs_tokens_and_state(tc19):
    x, ids = TEST[0]
    with pytest.raises(CodecError, match="needs each record's token ids"):
        tc19.encode(x)
    with pytest.raises(CodecError, match="needs each record's token ids"):
        tc19.decode(tc19.encode(x, ids), x.shape)
    with pytest.raises(CodecError, match="needs each record's token ids"):
        tc19.decode_batch([tc19.encode(x, ids)], [x.shape])
    with pytest.raises(CodecError, match="no fitted state"):
        Pipeline.from_spec("tc19").encode(x, ids)
    with pytest.raises(CodecError, match="no fitted state"):
        Pipeline.from_spec("tc19").decode(tc19.encode(x, ids), x.shape, tokens=ids)
    with pytest.raises(CodecError, match="no token ids"):
        Pipeline.from_spec("tc19").fit([(x, None)])
    with pytest.raises(CodecError, match="hidden size 32"):
        tc19.encode(np.zeros((3, 16), np.float32), np.zeros(3, np.int64))


def damaged(state, **arrays):
    a = dict(state.arrays)
    for k, v in arrays.items():
        if v is None:
            a.pop(k)
        else:
            a[k] = v
    return FittedState(state.codec, state.version, state.meta, a)


@pytest.mark.parametrize("change, message", [
    (lambda s: damaged(s, basis=None), "holds arrays"),
    (lambda s: damaged(s, mu=s.arrays["mu"].astype(np.float64)), "array mu is float64"),
    (lambda s: damaged(s, freq=s.arrays["freq"][:-1]), "array freq"),
    (lambda s: damaged(s, freq=s.arrays["freq"] + np.uint16(1)), "do not each sum"),
    (lambda s: damaged(s, delta=np.array([-1.0], np.float32)), "step"),
    (lambda s: damaged(s, tokens=s.arrays["tokens"][::-1].copy()), "strictly increasing"),
    (lambda s: FittedState("int8c", 1, s.meta, s.arrays), "for codec 'int8c'"),
    (lambda s: FittedState("tc", 99, s.meta, s.arrays), "version 99"),
])
def test_damaged_state_is_refused(tc19, change, message):
    with pytest.raises(CodecError, match=message):
        Pipeline.from_spec("tc19").with_state(change(tc19.state))


def test_unreachable_budget_says_what_to_ask():
    with pytest.raises(CodecError, match="bits a value cannot be met.*larger bits="):
        Pipeline.from_spec("tc:bits=0.2").fit(FIT)


@pytest.mark.parametrize("spec, message", [
    ("tc", "exactly one target"),
    ("tc:snr=19,bits=2", "exactly one target"),
    ("tc:bits=40", "bits=40.0 is out of range"),
])
def test_bad_specs(spec, message):
    with pytest.raises(CodecError, match=message):
        Pipeline.from_spec(spec)


@pytest.mark.real
def test_real_minilm_layer3():
    """Fitted on 40 Rotten Tomatoes reviews of MiniLM layer 3, 19 dB held (within 0.7 dB) on 20 others."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    from erpack.assets import load_dataset, model_path

    path = model_path("minilm")
    docs = sorted(load_dataset("rotten_tomatoes"), key=lambda r: r.id)[:60]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    enc = tok([d.text for d in docs], padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states[3]
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    records = [(hidden[i, :n].numpy().astype(np.float32), enc["input_ids"][i, :n].numpy()) for i, n in enumerate(lengths)]
    pipe = Pipeline.from_spec("tc19").fit(records[:40])
    meter, bits = measure(pipe, records[40:])
    assert abs(meter.sqnr_db - 19.0) < 0.7, meter.sqnr_db
    assert bits < 3.6  # below int4z's bits even when fitted on 40 reviews (state not counted)
