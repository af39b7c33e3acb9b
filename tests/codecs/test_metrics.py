"""The metrics: SQNR over a set, token cosine, bits per value."""

from __future__ import annotations

import math

import numpy as np

from erpack.codecs.metrics import Meter, bits_per_value, mean_token_cosine, sqnr_db


def test_sqnr_db():
    x = np.ones((2, 5), np.float32)
    assert sqnr_db(x, x) == math.inf
    assert math.isclose(sqnr_db(x, x * 1.1), 20.0, abs_tol=1e-4)  # noise 0.01 x^2: 20 dB
    assert sqnr_db(np.zeros((1, 2)), np.ones((1, 2))) == -math.inf


def test_mean_token_cosine():
    x = np.array([[1, 0], [0, 2], [0, 0]], np.float32)
    y = np.array([[2, 0], [0, -1], [0, 0]], np.float32)
    assert math.isclose(mean_token_cosine(x, y), (1 - 1 + 1) / 3)


def test_bits_per_value_counts_every_byte():
    assert bits_per_value(100, (10, 10)) == 8.0
    assert bits_per_value(1, (1, 4)) == 2.0


def test_meter_pools_the_set():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((n, 8)).astype(np.float32) for n in (1, 5, 9)]
    ys = [x + 0.01 * rng.standard_normal(x.shape).astype(np.float32) for x in xs]
    m = Meter()
    for x, y in zip(xs, ys):
        m.add(x, y, nbytes=x.size)
    X, Y = np.concatenate(xs), np.concatenate(ys)
    assert math.isclose(m.sqnr_db, sqnr_db(X, Y), rel_tol=1e-9)
    assert math.isclose(m.mean_token_cosine, mean_token_cosine(X, Y), rel_tol=1e-9)
    assert m.bits_per_value == 8.0 and m.tokens == 15
