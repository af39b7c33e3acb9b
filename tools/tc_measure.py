"""Measure the tc codec on saved activations: fit on the first half of the documents, measure on
the second. Prints a card, then one JSON document as its last line.

    OMP_NUM_THREADS=1 python tools/tc_measure.py ACTS.npz SPEC [SPEC...]

ACTS.npz holds x float32 (N, H), ids (N,) and off (documents + 1,) (the rows of each document).
Bits a value count each record's blob (header included), 16 bits a token for its id, and - in
`bits_all_in` - the fitted state's bytes spread over the measured half. Decode MB/s is float32
output of Pipeline.decode_batch over batches of 64 records on one thread.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from erpack.codecs import Pipeline


def main(path: str, specs: list[str]) -> list[dict]:
    d = np.load(path)
    x, ids, off = d["x"], d["ids"], d["off"]
    n = len(off) - 1
    recs = [(x[off[i] : off[i + 1]], ids[off[i] : off[i + 1]]) for i in range(n)]
    fit, test = recs[: n // 2], recs[n // 2 :]
    H = x.shape[1]
    out = []
    for spec in specs:
        t0 = time.perf_counter()
        pipe = Pipeline.from_spec(spec)
        if pipe.fitted:
            pipe = pipe.fit(fit, seed=0)
        fit_s = time.perf_counter() - t0
        blobs = [pipe.encode(a, t) for a, t in test]
        values = sum(a.size for a, _ in test)
        tokens = sum(len(t) for _, t in test)
        code_bytes = sum(len(b) for b in blobs)
        state_bytes = len(pipe.state.to_bytes()) if pipe.state is not None else 0
        sig = err = 0.0
        for b, (a, t) in zip(blobs, test):
            y = pipe.decode(b, a.shape, tokens=t)
            sig += float(np.einsum("ij,ij->", a, a, dtype=np.float64))
            err += float(((a.astype(np.float64) - y) ** 2).sum())
        shapes = [a.shape for a, _ in test]
        toks = [t for _, t in test]
        pipe.decode_batch(blobs[:64], shapes[:64], tokens=toks[:64])  # compile, warm
        t0 = time.perf_counter()
        for i in range(0, len(blobs), 64):
            pipe.decode_batch(blobs[i : i + 64], shapes[i : i + 64], tokens=toks[i : i + 64])
        dec_s = time.perf_counter() - t0
        bits = (8 * code_bytes + 16 * tokens) / values
        row = {
            "acts": path.rsplit("/", 1)[-1], "spec": pipe.spec, "H": H, "test_records": len(test), "test_tokens": tokens,
            "sqnr_db": round(10 * np.log10(sig / err), 3), "bits": round(bits, 4),
            "state_bytes": state_bytes, "bits_state": round(8 * state_bytes / values, 4),
            "bits_all_in": round(bits + 8 * state_bytes / values, 4),
            "decode_mb_s": round(4 * values / dec_s / 1e6, 1), "fit_s": round(fit_s, 1),
            "fit": (pipe.state.meta.get("fit") if pipe.state is not None else None),
        }
        out.append(row)
        print(f"{row['acts']} {row['spec']:>12}: {row['sqnr_db']:6.2f} dB  {row['bits']:.3f} b/v  + state "
              f"{state_bytes / 1e3:.0f} KB = {row['bits_state']:.3f} -> {row['bits_all_in']:.3f} all in  "
              f"decode {row['decode_mb_s']:.0f} MB/s  fit {row['fit_s']} s", flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
