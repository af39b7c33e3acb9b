"""Batch decode speed of tc against int4z / int8z on saved activations, one thread, best of N
rounds alternating the codecs (a loaded machine slows whichever runs when it is busy).

    OMP_NUM_THREADS=1 python tools/tc_speed.py ACTS.npz [ROUNDS]

Fits tc on 300 documents, decodes 1,200 others in batches of 64; prints a card, then one JSON
document (MB/s of float32 output, and tc's split: entropy decoding ns a code, product ns a value).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from erpack.codecs import Pipeline
from erpack.codecs.base import HEADER


def main(path: str, rounds: int = 5) -> dict:
    d = np.load(path)
    x, ids, off = d["x"], d["ids"], d["off"]
    recs = [(x[off[i] : off[i + 1]], ids[off[i] : off[i + 1]]) for i in range(1500)]
    fit, test = recs[:300], recs[300:]
    pipes = {s: Pipeline.from_spec(s) for s in ("tc19", "tc41", "int4z", "int8z")}
    pipes = {s: (p.fit(fit) if p.fitted else p) for s, p in pipes.items()}
    shapes, toks = [a.shape for a, _ in test], [t for _, t in test]
    values = sum(a.size for a, _ in test)
    blobs = {s: [p.encode(a, t) for a, t in test] for s, p in pipes.items()}
    best = {s: float("inf") for s in pipes}
    for _ in range(rounds):
        for s, p in pipes.items():
            p.decode_batch(blobs[s][:64], shapes[:64], tokens=toks[:64])
            t0 = time.perf_counter()
            for i in range(0, len(test), 64):
                p.decode_batch(blobs[s][i : i + 64], shapes[i : i + 64], tokens=toks[i : i + 64])
            best[s] = min(best[s], time.perf_counter() - t0)
    out = {"acts": path.rsplit("/", 1)[-1], "mb_s": {s: round(4 * values / t / 1e6, 1) for s, t in best.items()}}
    for s in ("tc19", "tc41"):  # split of tc's time
        c = pipes[s].array_codec
        m = c.model
        data = [np.frombuffer(b, np.uint8, offset=HEADER.size) for b in blobs[s]]
        lens = np.array([len(t) for t in toks])
        scale = np.empty(lens.sum(), np.float32)
        starts, o = [], 0
        for k, dd in enumerate(data):
            starts.append(o + c._exceptions(dd, int(lens[k]), scale, int(lens[:k].sum())))
            o += len(dd)
        ends = np.cumsum([len(dd) for dd in data])
        codes = np.empty((m.K, int(lens.sum())), np.float32)
        cat, starts = np.concatenate(data), np.array(starts)
        t_e = t_p = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            c._entropy_decode(cat, starts, ends, lens, codes)
            t1 = time.perf_counter()
            codes.T @ m.basis_f
            t_e, t_p = min(t_e, t1 - t0), min(t_p, time.perf_counter() - t1)
        out[s] = {"K": m.K, "entropy_ns_per_code": round(t_e / codes.size * 1e9, 2),
                  "product_ns_per_value": round(t_p / values * 1e9, 2)}
    print(f"{out['acts']}: " + ", ".join(f"{s} {v} MB/s" for s, v in out["mb_s"].items())
          + "; " + "; ".join(f"{s}: entropy {out[s]['entropy_ns_per_code']} ns/code, product "
                             f"{out[s]['product_ns_per_value']} ns/value" for s in ("tc19", "tc41")))
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], *(int(a) for a in sys.argv[2:]))))
