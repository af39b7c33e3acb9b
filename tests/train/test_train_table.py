"""tools/train_table.py's table: paired differences against the baseline of the same tag and seed."""

import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "train_table.py"


@pytest.fixture(scope="module")
def train_table():
    spec = importlib.util.spec_from_file_location("train_table", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(kind, seed, acc, tag="a", mode="full", codec=None, seconds=10.0, validation=0.5, lr=1e-3):
    return {"kind": kind, "model": "m", "dataset": "rt", "codec": codec, "mode": mode, "seed": seed, "layer": 3,
            "tag": tag, "result": {"test": {"accuracy": acc}, "best_validation": {"accuracy": validation},
                                   "train_seconds_per_epoch": seconds, "lr": lr}}


def test_table_pairs_seeds_and_keeps_tags_apart(train_table, tmp_path, capsys):
    rows = [
        {"kind": "encode", "model": "m", "dataset": "rt", "codec": "int8z", "seconds": 8.0, "bytes": 100},
        _run("baseline", 0, 0.80), _run("baseline", 1, 0.70),
        _run("recycled", 0, 0.79, mode="upper", codec="int8z", seconds=4.0),
        _run("recycled", 1, 0.67, mode="upper", codec="int8z", seconds=4.0),
        # another configuration: its own baseline, never mixed with tag "a"
        _run("baseline", 0, 0.50, tag="b"), _run("recycled", 0, 0.60, tag="b", mode="upper", codec="int8z"),
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    out = train_table.table(tmp_path, tags=["a"], markdown=True)["rows"]
    assert len(out) == 1
    row = out[0]
    assert row["seeds"] == [0, 1]
    assert row["delta_points_mean"] == pytest.approx(-2.0)
    assert (row["delta_points_min"], row["delta_points_max"]) == (pytest.approx(-3.0), pytest.approx(-1.0))
    assert row["within_1_point"] is False
    assert row["epoch_time_ratio"] == pytest.approx(0.4)
    assert row["break_even_epochs"] == pytest.approx(8.0 / 6.0)
    assert "| a | m, 3 | rt | int8z | upper |" in capsys.readouterr().out

    both = {r["tag"]: r for r in train_table.table(tmp_path)["rows"]}
    assert both["b"]["delta_points_mean"] == pytest.approx(10.0)
    assert both["b"]["within_1_point"] is True


def test_select_chooses_each_seed_on_validation_never_on_test(train_table, tmp_path):
    rows = [
        _run("baseline", 0, 0.80, validation=0.7),
        _run("recycled", 0, 0.70, mode="adapter", codec="fp32", validation=0.6, lr=2e-3),
        _run("recycled", 1, 0.75, mode="adapter", codec="fp32", validation=0.9, lr=2e-3),
        _run("baseline", 1, 0.80, validation=0.7),
        # tag "b": better validation on seed 0 only (and a worse test score there), no baseline of its own
        _run("recycled", 0, 0.65, tag="b", mode="adapter", codec="fp32", validation=0.8, lr=5e-3),
        _run("recycled", 1, 0.99, tag="b", mode="adapter", codec="fp32", validation=0.1, lr=5e-3),
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    (row,) = train_table.table(tmp_path, tags=["a", "b"], merge="validation")["rows"]
    assert row["tag"] == "a+b"
    assert row["lr"] == [2e-3, 5e-3]
    assert row["test_accuracy_mean"] == pytest.approx((0.65 + 0.75) / 2)
    assert row["delta_points_mean"] == pytest.approx(((0.65 - 0.80) + (0.75 - 0.80)) / 2 * 100)

    # overlay: the first tag listed that has the run, whatever its validation score
    (row,) = train_table.table(tmp_path, tags=["a", "b"], merge="order")["rows"]
    assert row["test_accuracy_mean"] == pytest.approx((0.70 + 0.75) / 2)
    (row,) = train_table.table(tmp_path, tags=["b", "a"], merge="order")["rows"]
    assert row["test_accuracy_mean"] == pytest.approx((0.65 + 0.99) / 2)
    assert row["baseline_accuracy_mean"] == pytest.approx(0.80)


def test_a_test_decile_redeals_train_and_test_and_keeps_validation(train_table, tmp_path):
    from erpack.assets import bucket_of

    rows = [{"id": f"d{i}", "text": "t", "label": "x", "split": s}
            for i, s in enumerate(["train"] * 60 + ["validation"] * 10 + ["test"] * 10)]
    base = tmp_path / "rt-file-60-10-10.jsonl"
    base.write_text("".join(json.dumps(r) + "\n" for r in rows))

    path = train_table.fold_corpus(base, 3)
    assert path.name == "rt-file-60-10-10-d3.jsonl"
    dealt = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in dealt] == [r["id"] for r in rows]  # the same documents: the caches are shared
    for old, new in zip(rows, dealt):
        if old["split"] == "validation":
            assert new["split"] == "validation"
        else:
            assert new["split"] == ("test" if int(bucket_of(old["id"]) * 10) == 3 else "train")
    assert {r["split"] for r in dealt} == {"train", "validation", "test"}
    with pytest.raises(SystemExit, match="decile 8 is the validation split"):
        train_table.fold_corpus(base, 8)


def test_deciles_pair_with_their_own_baseline_and_pool_with_a_bootstrap_interval(train_table, tmp_path):
    def run(kind, seed, decile, correct, **kw):
        row = _run(kind, seed, correct.count("1") / len(correct), **kw)
        return {**row, "test_decile": decile, "test_correct": correct}

    rows = [
        # decile 0: the recycled run gets one document of four fewer than its baseline
        run("baseline", 0, 0, "1111"), run("recycled", 0, 0, "1110", mode="upper", codec="fp32"),
        # decile 1, same seed: level with its own baseline (against decile 0's it would be 50 points down)
        run("baseline", 0, 1, "1100"), run("recycled", 0, 1, "1100", mode="upper", codec="fp32"),
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    (row,) = train_table.table(tmp_path)["rows"]
    assert row["seeds"] == [0, 0] and row["test_deciles"] == [0, 1]
    assert row["delta_points_mean"] == pytest.approx((-25.0 + 0.0) / 2)
    lo, hi = row["delta_points_ci95"]
    assert lo < row["delta_points_mean"] <= hi <= 0.0  # decile 0 can only lose, decile 1 only tie

    # a run that did not record its test documents: no interval rather than one over part of the runs
    rows.append(_run("baseline", 1, 0.5) | {"test_decile": None})
    rows.append(_run("recycled", 1, 0.5, mode="upper", codec="fp32"))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (row,) = train_table.table(tmp_path)["rows"]
    assert row["test_deciles"] == [0, 1, 9] and row["delta_points_ci95"] is None
    assert row["delta_points_by_decile"] == {0: pytest.approx(-25.0), 1: 0.0, 9: 0.0}
    assert row["delta_points_decile_mean"] == pytest.approx(-25.0 / 3)


def test_paired_bootstrap_resamples_documents_shared_by_the_runs_of_a_decile(train_table):
    assert train_table.paired_bootstrap([(9, "1" * 50, "1" * 50)]) == (0.0, 0.0)
    lo, hi = train_table.paired_bootstrap([(9, "10" * 100, "01" * 100)])
    assert lo < 0.0 < hi and hi - lo > 10.0  # every document disagrees: a wide interval around 0
    with pytest.raises(ValueError, match="decile 9: 3 recycled against 2"):
        train_table.paired_bootstrap([(9, "111", "11")])


def test_grids_sharing_a_work_folder_encode_a_cache_once(train_table, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from erpack.store import CacheReader

    corpus = tmp_path / "rt-file-2-1-1.jsonl"
    texts = ["a fine film", "dull and long", "a fresh take on an old story", "it drags"]
    corpus.write_text("".join(json.dumps({"id": f"rt-{i}", "text": t, "label": "fresh", "split": "train"}) + "\n"
                              for i, t in enumerate(texts)))
    with ThreadPoolExecutor(2) as pool:  # two grids at once: the lock makes the second wait, then reuse
        paths = list(pool.map(lambda _: train_table.ensure_cache(tmp_path, corpus, "minilm", "rt", "int8z", 3, 32),
                              range(2)))
    assert paths[0] == paths[1]
    encodes = [r for r in train_table.load_results(tmp_path / "results.jsonl") if r["kind"] == "encode"]
    assert len(encodes) == 1 and encodes[0]["documents"] == 4
    with CacheReader(paths[0]) as reader:
        assert reader.meta["layer"] == 3 and len(reader) == 4


def test_mode_cells_name_the_adapter_they_train(train_table):
    from erpack.errors import InputError
    from erpack.train import AdapterSpec

    assert train_table.mode_spec("upper") == ("upper", None)
    assert train_table.mode_spec("adapter") == ("adapter", AdapterSpec())
    assert train_table.mode_spec("adapter-r64") == ("adapter", AdapterSpec(r=64, alpha=128))
    assert train_table.mode_spec("adapter-ia3") == ("adapter", AdapterSpec("ia3"))
    assert train_table.mode_spec("adapter-r64a32") == ("adapter", AdapterSpec(r=64, alpha=32))
    assert train_table.mode_spec("adapter-ln") == ("adapter", AdapterSpec(norms=True))
    assert train_table.mode_spec("adapter-r8a16-ln") == ("adapter", AdapterSpec(r=8, alpha=16, norms=True))
    assert train_table.mode_spec("adapter-dora") == ("adapter", AdapterSpec(dora=True))
    assert train_table.mode_spec("adapter-r8-dora-ln") == ("adapter", AdapterSpec(r=8, norms=True, dora=True))
    for bad in ("adapter-r", "adapter-rx", "adapter-r8a", "adapter-ln-r8", "lora", "adapter-r0", "adapter-ia3-dora",
                "adapter-ln-dora"):
        with pytest.raises(InputError):
            train_table.mode_spec(bad)


def test_an_unknown_mode_fails_before_anything_is_written(train_table, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_table.main(["--work", str(tmp_path / "w"), "--modes", "upper,adaptor", "--datasets", "rt"])
    assert exit_.value.code == 2 and "unknown mode 'adaptor'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
