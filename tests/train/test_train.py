"""Training from a tiny cache: the loss falls, frozen weights stay frozen, bad caches and labels are refused."""

from __future__ import annotations

import json

import pytest
import torch

from erpack.errors import InputError, ManifestMismatchError
from erpack.train import AdapterSpec, TaskModel, TrainConfig, train_from_cache
from tests.train.conftest import LAYER, write_cache, write_jsonl

FAST = dict(batch_size=8, warmup=0.0, patience=100)


def test_upper_loss_falls_and_lower_layers_stay(tiny):
    s = train_from_cache(tiny["cache"], str(tiny["labels"]), mode="upper",
                         config=TrainConfig(epochs=4, lr=1e-3, **FAST))
    losses = [e["train_loss"] for e in s.recycled.epochs]
    assert losses[-1] < losses[0] - 0.05, losses
    assert s.documents == {"train": 32, "validation": 8, "test": 8}
    assert s.recycled.test["n"] == 8


def test_a_seeded_run_repeats_exactly_and_another_seed_differs(tiny):
    """Fixed seeds: a baseline trained by an earlier command with the same seed is the one this command
    would train, so recycled runs can be compared with it (tools/train_table.py relies on this)."""
    def run(seed):
        s = train_from_cache(tiny["cache"], str(tiny["labels"]), mode="adapter", baseline=True,
                             config=TrainConfig(epochs=2, lr=1e-2, seed=seed, **FAST))
        return [(e["train_loss"], e["validation"]) for r in (s.recycled, s.baseline) for e in r.epochs]

    first = run(0)
    assert run(0) == first
    assert run(1) != first


def _fit_adapter(reader, data, prepared):
    """Two epochs of `prepared` (adapter mode) on the cache's training split; returns its upper stack."""
    from erpack.models import split_model
    from erpack.train.data import cache_source
    from erpack.train.loop import fit

    _, upper = split_model(prepared.model, LAYER)
    train = cache_source(reader, [e.id for e in data.splits["train"]], data.lengths["train"])
    fit(task="classification", mode="adapter", lr=1e-2, cfg=TrainConfig(epochs=2, **FAST), params_of=prepared.model,
        modules=[upper], forward=lambda x: upper(*x), train=train, y_train=data.y["train"], validation=None,
        y_validation=None, num_classes=2, device=torch.device("cpu"))
    return upper


@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_adapter_mode_changes_no_frozen_weight(tiny, kind):
    from erpack.store import CacheReader
    from erpack.train.modes import load_for_cache, prepare
    from erpack.train.trainer import prepare_data

    with CacheReader(tiny["cache"]) as reader:
        data = prepare_data(reader, str(tiny["labels"]), "classification")
        _, model = load_for_cache(reader.meta, ["neg", "pos"], "classification", seed=0)
        before = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
        head = {n for n in before if n.startswith(("classifier.", "bert.pooler."))}
        prepared = prepare(model, "adapter", LAYER, AdapterSpec(kind))
        names = [n for n, _ in prepared.model.named_modules()]
        assert not any(f"encoder.layer.{i}." in n for n in names for i in range(LAYER)
                       if "lora" in n or "ia3" in n), "an adapter reached a lower layer"
        assert prepared.targets and all(int(t.split(".")[3]) >= LAYER for t in prepared.targets)
        _fit_adapter(reader, data, prepared)
    changed = [n for n, (p, old) in before.items() if not torch.equal(p.detach(), old)]
    assert changed and set(changed) <= head, f"frozen weights changed: {sorted(set(changed) - head)}"
    trained = [n for n, p in prepared.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n or "ia3_" in n for n in trained)
    assert "bert.pooler.dense.weight" in trained  # BERT's pooler is part of the head: it trains in every mode


def test_adapter_with_norms_trains_only_the_upper_layernorms_beside_it(tiny):
    from erpack.store import CacheReader
    from erpack.train.modes import load_for_cache, prepare

    with CacheReader(tiny["cache"]) as reader:
        _, model = load_for_cache(reader.meta, ["neg", "pos"], "classification", seed=0)
    prepared = prepare(model, "adapter", LAYER, AdapterSpec(norms=True))
    trained = {n for n, p in prepared.model.named_parameters() if p.requires_grad}
    norms = {n for n in trained if "LayerNorm" in n}
    layers = len(prepared.model.bert.encoder.layer)
    assert len(norms) == 2 * 2 * (layers - LAYER)  # two LayerNorms a layer, weight and bias, upper layers only
    assert all(int(n.split(".")[3]) >= LAYER for n in norms)
    assert not any("embeddings" in n for n in trained)
    assert AdapterSpec(norms=True).as_dict()["norms"] is True and "norms" not in AdapterSpec().as_dict()


def test_dora_trains_magnitudes_and_merges_to_the_same_function(tiny):
    from erpack.models import split_model
    from erpack.store import CacheReader
    from erpack.train.data import as_tensors
    from erpack.train.modes import load_for_cache, prepare
    from erpack.train.trainer import prepare_data

    with CacheReader(tiny["cache"]) as reader:
        data = prepare_data(reader, str(tiny["labels"]), "classification")
        _, model = load_for_cache(reader.meta, ["neg", "pos"], "classification", seed=0)
        prepared = prepare(model, "adapter", LAYER, AdapterSpec(dora=True))
        magnitudes = {n: p.detach().clone() for n, p in prepared.model.named_parameters() if "magnitude" in n}
        assert len(magnitudes) == len(prepared.targets)  # one magnitude vector per adapted linear
        upper = _fit_adapter(reader, data, prepared)
        batch = as_tensors(reader.get_batch([e.id for e in data.splits["test"]]))
    trained = dict(prepared.model.named_parameters())
    assert any(not torch.equal(trained[n].detach(), m) for n, m in magnitudes.items()), "no magnitude trained"
    upper.eval()
    with torch.no_grad():
        before = upper(*batch).clone()
        merged = prepared.finalize()
        _, merged_upper = split_model(merged.eval(), LAYER)
        after = merged_upper(*batch)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    assert AdapterSpec(dora=True).as_dict()["dora"] is True and "dora" not in AdapterSpec().as_dict()
    with pytest.raises(InputError, match="DoRA"):
        AdapterSpec("ia3", dora=True)


def test_cache_of_other_weights_is_refused(tiny, tmp_path):
    from erpack.store import CacheReader

    with CacheReader(tiny["cache"]) as r:
        identity = dict(r.meta["model"], weights_sha256="0" * 64)
    bad = write_cache(tmp_path / "bad", tiny["model"], tiny["rows"][:8], meta_changes={"model": identity})
    with pytest.raises(ManifestMismatchError, match="sha256"):
        train_from_cache(bad, str(tiny["labels"]), config=TrainConfig(epochs=1), skip_missing=True)


def test_task_model_refuses_other_layer_and_notes_other_codec(tiny, tmp_path):
    from erpack.store import CacheReader

    out = tmp_path / "tm"
    train_from_cache(tiny["cache"], str(tiny["labels"]), mode="head", output=out, config=TrainConfig(epochs=1, **FAST))
    tm = TaskModel.load(out)
    other_layer = write_cache(tmp_path / "k1", tiny["model"], tiny["rows"][:4], layer=1)
    with CacheReader(other_layer) as r, pytest.raises(ManifestMismatchError, match="layer 1"):
        tm.check_cache(r)
    other_codec = write_cache(tmp_path / "fp16", tiny["model"], tiny["rows"][:4], codec="fp16")
    with CacheReader(other_codec) as r:
        notes = tm.check_cache(r)
    assert len(notes) == 1 and "codec fp16" in notes[0]
    sha = dict(tm.expected_cache["model"], weights_sha256="1" * 64)
    tm.info["cache"] = dict(tm.expected_cache, model=sha)
    with CacheReader(tiny["cache"]) as r, pytest.raises(ManifestMismatchError, match="weights_sha256"):
        tm.check_cache(r)


def test_labelled_id_missing_from_cache_is_named(tiny, tmp_path):
    rows = tiny["rows"] + [{"id": "ghost-7", "text": "w3 w4", "label": "pos", "split": "train"}]
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)
    with pytest.raises(InputError, match=r"'ghost-7'.*not in the cache.*--skip-missing"):
        train_from_cache(tiny["cache"], str(labels), config=TrainConfig(epochs=1))
    s = train_from_cache(tiny["cache"], str(labels), mode="head", config=TrainConfig(epochs=1, **FAST), skip_missing=True)
    assert s.skipped_missing == 1


def test_label_file_errors_name_the_line(tmp_path):
    from erpack.train.labels import read_labels

    bad = tmp_path / "l.jsonl"
    bad.write_text('{"id": "a", "label": "x"}\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"l.jsonl:2: the row has no `label`"):
        read_labels(str(bad))
    bad.write_text('{"id": "a", "label": "x"}\n{"id": "a", "label": "y"}\n')
    with pytest.raises(InputError, match=r"l.jsonl:2: id 'a' already labelled at .*l.jsonl:1"):
        read_labels(str(bad))
    csvf = tmp_path / "l.csv"
    csvf.write_text("id,label\na,0.5\nb,oops\n")
    with pytest.raises(InputError, match=r"l.csv:3: label 'oops' is not a number"):
        read_labels(str(csvf), "regression")


def test_save_load_round_trip_gives_identical_logits(tiny, tmp_path):
    from erpack.store import CacheReader
    from erpack.train.data import pad_batch

    out = tmp_path / "tm"
    s = train_from_cache(tiny["cache"], str(tiny["labels"]), mode="adapter", output=out,
                         config=TrainConfig(epochs=1, **FAST))
    info = json.loads((out / "erpack_task.json").read_text())
    assert info["mode"] == "adapter" and info["adapter"]["kind"] == "lora" and info["layer"] == LAYER
    assert info["cache"]["model"]["weights_sha256"] and info["cache"]["codec"]["id"] == "pipeline"
    assert info["training"]["recycled"]["epochs"] and (out / "model.safetensors").is_file()
    tm = TaskModel.load(out)
    assert tm.labels == ["neg", "pos"] and tm.task == "classification" and s.output == str(out)
    with CacheReader(tiny["cache"]) as r:
        hidden, mask = pad_batch([r.get(i) for i in r.ids()[:6]])
    again = TaskModel.load(out)
    a, b = tm.predict(hidden, mask), again.predict(hidden, mask)
    assert a.shape == (6, 2) and torch.equal(a, b)
    assert not any("lora" in n for n in tm.model.state_dict()), "adapters are merged before saving"


def test_regression_trains_and_scores(tiny, tmp_path):
    rows = [dict(r, label=1.0 if r["label"] == "pos" else -1.0) for r in tiny["rows"]]
    labels = write_jsonl(tmp_path / "reg.jsonl", rows)
    s = train_from_cache(tiny["cache"], str(labels), task="regression", mode="upper",
                         config=TrainConfig(epochs=3, lr=1e-3, **FAST))
    assert set(s.recycled.test) == {"pearson", "mse", "n"}
    assert s.labels == []


def test_recycled_step_equals_full_model_step_on_upper_layers(tiny, tmp_path):
    """From an exact (fp32, unplanted) cache, the upper stack's loss and gradients on layers k..L-1 and
    the head are those of the whole model run from token ids (dropout off): training from the cache
    is the same optimisation problem restricted to the upper weights."""
    from erpack.models import split_model
    from erpack.store import CacheReader
    from erpack.train.data import pad_batch
    from erpack.train.loop import loss_fn
    from erpack.train.modes import load_for_cache, prepare

    rows = tiny["rows"][:6]
    cache = write_cache(tmp_path / "exact", tiny["model"], rows, plant=0.0)
    with CacheReader(cache) as reader:
        loaded, full = load_for_cache(reader.meta, ["neg", "pos"], "classification", seed=3)
        _, recycled = load_for_cache(reader.meta, ["neg", "pos"], "classification", seed=3)
        hidden, mask = pad_batch([reader.get(r["id"]) for r in rows])
    prepare(recycled, "upper", LAYER)
    _, upper = split_model(recycled, LAYER)
    enc = loaded.tokenizer([r["text"] for r in rows], padding=True, truncation=True, max_length=32, return_tensors="pt")
    y = torch.tensor([int(r["label"] == "pos") for r in rows])
    loss_a = loss_fn("classification", full(**enc).logits, y)
    loss_b = loss_fn("classification", upper(hidden, mask), y)
    loss_a.backward()
    loss_b.backward()
    assert torch.allclose(loss_a, loss_b, atol=1e-5), (loss_a.item(), loss_b.item())
    grads_b = {n: p.grad for n, p in recycled.named_parameters() if p.requires_grad}
    assert any(n.startswith(f"bert.encoder.layer.{LAYER}.") for n in grads_b) and "classifier.weight" in grads_b
    for n, p in full.named_parameters():
        if n in grads_b:
            diff = (p.grad - grads_b[n]).abs().max().item()
            assert diff < 1e-4 * max(1.0, p.grad.abs().max().item()), (n, diff)


def test_runs_keep_their_test_logits_for_paired_comparisons_but_never_serialize_them(tiny):
    from erpack.store import CacheReader
    from erpack.train.baseline import run_baseline
    from erpack.train.trainer import prepare_data, run_recycled

    cfg = TrainConfig(epochs=1, lr=1e-3, **FAST)
    with CacheReader(tiny["cache"]) as reader:
        data = prepare_data(reader, str(tiny["labels"]), "classification")
        _, recycled = run_recycled(reader, data, "upper", cfg=cfg)
        baseline = run_baseline(reader.meta, data, cfg)
    for r in (recycled, baseline):
        assert r.test_logits.shape == (len(data.splits["test"]), 2)
        right = (r.test_logits.argmax(axis=1) == data.y["test"]).mean()
        assert r.test["accuracy"] == pytest.approx(right)
        d = r.as_dict()
        assert "test_logits" not in d
        json.dumps(d)


def test_the_summary_is_typed_and_its_dict_is_the_json_and_the_stored_record(tiny, tmp_path):
    """train_from_cache returns a TrainSummary; as_dict() has the keys `erpack train --json` always had, and
    erpack_task.json (the model's and the baseline's) stores record(): the same without `cleaned`."""
    from erpack.train.loop import RunResult
    from erpack.train.trainer import Comparison, TrainSummary

    out = tmp_path / "tm"
    s = train_from_cache(tiny["cache"], str(tiny["labels"]), mode="head", output=out, baseline=True,
                         config=TrainConfig(epochs=1, **FAST))
    assert isinstance(s, TrainSummary) and isinstance(s.recycled, RunResult) and isinstance(s.baseline, RunResult)
    assert isinstance(s.comparison, Comparison) and s.comparison.metric == "accuracy"
    d = json.loads(json.dumps(s.as_dict()))
    assert list(d) == ["cache", "codec", "model", "layer", "task", "labels", "source", "documents", "skipped_missing",
                       "config", "recycled", "baseline", "comparison", "seconds", "output", "baseline_output", "cleaned"]
    assert d["config"]["epochs"] == 1 and d["recycled"]["mode"] == "head" and d["baseline"]["mode"] == "full"
    assert set(d["comparison"]) == {"metric", "test_delta_points", "epoch_time_ratio"} and d["cleaned"] == []
    stored = json.loads((out / "erpack_task.json").read_text())["training"]
    assert stored == {k: v for k, v in d.items() if k != "cleaned"}
    assert json.loads((out / "baseline" / "erpack_task.json").read_text())["training"] == stored
    unsaved = train_from_cache(tiny["cache"], str(tiny["labels"]), mode="head", config=TrainConfig(epochs=1, **FAST))
    assert "baseline_output" not in unsaved.as_dict() and "cleaned" not in unsaved.as_dict()
    assert unsaved.as_dict()["output"] is None and unsaved.as_dict()["baseline"] is None
