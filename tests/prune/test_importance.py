"""Importance scores: shapes, per-layer normalisation, a gradient check, the safetensors file, describe."""

from __future__ import annotations

import torch

from erpack.prune import Importance, describe_importance, score_importance
from erpack.prune.gates import Gates
from tests.checkers import tiny_model


def _batches(n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        hidden = torch.randn(4, 6, 32, generator=g)  # (B, T, H)
        mask = torch.ones(4, 6, dtype=torch.long)
        yield hidden, mask, torch.randint(0, 2, (4,), generator=g)


def test_scores_have_the_right_shapes_and_unit_norm_per_layer():
    for model_type in ("bert", "mpnet"):
        model = tiny_model(model_type, num_labels=2)
        imp = score_importance(model, 1, _batches(), "classification")
        assert imp.layers == [1, 2, 3] and imp.samples == 12
        for i in imp.layers:
            assert imp.heads[i].shape == (4,) and imp.neurons[i].shape == (64,)
            assert torch.all(imp.heads[i] >= 0) and torch.all(imp.neurons[i] >= 0)
            assert abs(float(imp.heads[i].norm()) - 1) < 1e-6
            assert abs(float(imp.neurons[i].norm()) - 1) < 1e-6
        assert all(p.grad is None for p in model.parameters())  # only the gates got gradients


def test_head_score_is_the_gradient_of_the_loss_wrt_the_gate():
    model = tiny_model("bert", num_labels=2)
    batch = next(_batches(1))
    imp = score_importance(model, 2, [batch], "classification")
    # finite difference on the gate of head 1 of layer 3 gives |dL/dg| up to normalisation
    from erpack.models import split_model
    from erpack.train.loop import loss_fn

    _, upper = split_model(model, 2)
    losses = []
    for g in (1 - 1e-2, 1 + 1e-2):
        heads = {3: torch.tensor([1.0, g, 1.0, 1.0])}
        with torch.no_grad(), Gates(model, [3], heads=heads, requires_grad=False):
            losses.append(float(loss_fn("classification", upper(batch[0], batch[1]), batch[2])))
    grad = abs(losses[1] - losses[0]) / 2e-2
    with Gates(model, [3]) as gates:
        loss = loss_fn("classification", upper(batch[0], batch[1]), batch[2])
        (g,) = torch.autograd.grad(loss, [gates.heads[3]])
    assert abs(grad - abs(float(g[1]))) <= 1e-3 * max(1.0, grad)
    expected = g.abs() / g.abs().norm()
    assert torch.allclose(imp.heads[3], expected, atol=1e-6)


def test_importance_file_round_trips_and_describes(tmp_path):
    model = tiny_model("bert", num_labels=2)
    imp = score_importance(model, 1, _batches(), "classification")
    path = imp.save(tmp_path)
    assert path.name == "erpack_importance.safetensors"
    back = Importance.load(tmp_path)
    assert back.layers == imp.layers and back.samples == imp.samples
    for i in imp.layers:
        assert torch.equal(back.heads[i], imp.heads[i]) and torch.equal(back.neurons[i], imp.neurons[i])
    d = describe_importance(tmp_path)
    assert [row["layer"] for row in d["layers"]] == [1, 2, 3]
    assert len(d["layers"][0]["heads"]) == 4 and d["layers"][0]["neurons"]["count"] == 64
    assert d["pruning"] is None and d["samples"] == 12
    assert describe_importance(tmp_path / "nothing")["importance"] is None
