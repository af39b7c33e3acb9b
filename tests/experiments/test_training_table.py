"""erpack.experiments.training.grid_table: paired differences against the baseline of the same tag,
seed and test decile; and the mode cells of a grid."""

import pytest

from erpack.errors import InputError
from erpack.experiments.training import TrainGrid, cell_mode, grid_table, timing_table
from erpack.train import AdapterSpec
from tests.experiments.rows import on_decile, run


def test_table_pairs_seeds_and_keeps_tags_apart():
    rows = [
        {"kind": "encode", "model": "m", "dataset": "rt", "codec": "int8z", "layer": 3, "seconds": 8.0, "bytes": 100},
        run("baseline", 0, 0.80), run("baseline", 1, 0.70),
        run("recycled", 0, 0.79, mode="upper", codec="int8z", seconds=4.0),
        run("recycled", 1, 0.67, mode="upper", codec="int8z", seconds=4.0),
        # another configuration: its own baseline, never mixed with tag "a"
        run("baseline", 0, 0.50, tag="b"), run("recycled", 0, 0.60, tag="b", mode="upper", codec="int8z"),
    ]
    (row,) = grid_table(rows, tags=["a"])
    assert row["seeds"] == [0, 1]
    assert row["delta_points_mean"] == pytest.approx(-2.0)
    assert (row["delta_points_min"], row["delta_points_max"]) == (pytest.approx(-3.0), pytest.approx(-1.0))
    assert row["within_1_point"] is False
    assert row["epoch_time_ratio"] == pytest.approx(0.4)
    assert row["break_even_epochs"] == pytest.approx(8.0 / 6.0)

    both = {r["tag"]: r for r in grid_table(rows)}
    assert both["b"]["delta_points_mean"] == pytest.approx(10.0)
    assert both["b"]["within_1_point"] is True


def test_select_chooses_each_seed_on_validation_never_on_test():
    rows = [
        run("baseline", 0, 0.80, validation=0.7),
        run("recycled", 0, 0.70, mode="adapter", codec="fp32", validation=0.6, lr=2e-3),
        run("recycled", 1, 0.75, mode="adapter", codec="fp32", validation=0.9, lr=2e-3),
        run("baseline", 1, 0.80, validation=0.7),
        # tag "b": better validation on seed 0 only (and a worse test score there), no baseline of its own
        run("recycled", 0, 0.65, tag="b", mode="adapter", codec="fp32", validation=0.8, lr=5e-3),
        run("recycled", 1, 0.99, tag="b", mode="adapter", codec="fp32", validation=0.1, lr=5e-3),
    ]
    (row,) = grid_table(rows, tags=["a", "b"], merge="validation")
    assert row["tag"] == "a+b"
    assert row["lr"] == [2e-3, 5e-3]
    assert row["test_accuracy_mean"] == pytest.approx((0.65 + 0.75) / 2)
    assert row["delta_points_mean"] == pytest.approx(((0.65 - 0.80) + (0.75 - 0.80)) / 2 * 100)

    # overlay: the first tag listed that has the run, whatever its validation score
    (row,) = grid_table(rows, tags=["a", "b"], merge="order")
    assert row["test_accuracy_mean"] == pytest.approx((0.70 + 0.75) / 2)
    (row,) = grid_table(rows, tags=["b", "a"], merge="order")
    assert row["test_accuracy_mean"] == pytest.approx((0.65 + 0.99) / 2)
    assert row["baseline_accuracy_mean"] == pytest.approx(0.80)


def test_deciles_pair_with_their_own_baseline_and_pool_with_a_bootstrap_interval():
    rows = [
        # decile 0: the recycled run gets one document of four fewer than its baseline
        on_decile("baseline", 0, 0, "1111"), on_decile("recycled", 0, 0, "1110", mode="upper", codec="fp32"),
        # decile 1, same seed: level with its own baseline (against decile 0's it would be 50 points down)
        on_decile("baseline", 0, 1, "1100"), on_decile("recycled", 0, 1, "1100", mode="upper", codec="fp32"),
    ]
    (row,) = grid_table(rows)
    assert row["seeds"] == [0, 0] and row["test_deciles"] == [0, 1]
    assert row["delta_points_mean"] == pytest.approx((-25.0 + 0.0) / 2)
    lo, hi = row["delta_points_ci95"]
    assert lo < row["delta_points_mean"] <= hi <= 0.0  # decile 0 can only lose, decile 1 only tie

    # a run that did not record its test documents: no interval rather than one over part of the runs
    rows.append(run("baseline", 1, 0.5) | {"test_decile": None})
    rows.append(run("recycled", 1, 0.5, mode="upper", codec="fp32"))
    (row,) = grid_table(rows)
    assert row["test_deciles"] == [0, 1, 9] and row["delta_points_ci95"] is None
    assert row["delta_points_by_decile"] == {0: pytest.approx(-25.0), 1: 0.0, 9: 0.0}
    assert row["delta_points_decile_mean"] == pytest.approx(-25.0 / 3)


def test_timing_table_takes_medians_over_rounds():
    rows = [{"kind": "timing", "model": "m", "dataset": "rt", "layer": 3, "documents": 5, "tokens": 50,
             "seconds": {"full": full, "upper fp32": t, "upper fp32 wait": 0.1}} for full, t in ((10, 4), (12, 5), (11, 9))]
    (row,) = timing_table(rows)
    assert (row["what"], row["seconds"], row["full_seconds"], row["rounds"]) == ("upper fp32", 5.0, 11.0, 3)
    assert row["ratio"] == pytest.approx(5 / 11) and row["wait_seconds"] == pytest.approx(0.1)


def test_mode_cells_name_what_they_train():
    assert cell_mode("upper") == ("upper", None)
    assert cell_mode("head") == ("head", None)
    assert cell_mode("adapter-r8-dora-ln") == ("adapter", AdapterSpec(r=8, norms=True, dora=True))
    with pytest.raises(InputError, match="unknown mode 'adaptor'; modes: upper, head, adapter"):
        cell_mode("adaptor")
    with pytest.raises(InputError, match=r"unknown mode 'adapter-ia3-dora' \(DoRA is a form of LoRA"):
        cell_mode("adapter-ia3-dora")


def test_a_grid_refuses_a_bad_cell_or_decile_before_it_runs(tmp_path):
    with pytest.raises(InputError, match="unknown mode 'lora'"):
        TrainGrid(modes=["upper", "lora"], work=tmp_path / "w")
    with pytest.raises(InputError, match="decile 8 is the validation split"):
        TrainGrid(test_decile=8, work=tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_against_pairs_each_cell_with_the_same_mode_and_seed_of_another_cache():
    rows = [
        run("baseline", 0, 0.90),  # the full fine-tune plays no part
        run("recycled", 0, 0.80, mode="upper", codec="int4z"), run("recycled", 1, 0.70, mode="upper", codec="int4z"),
        run("recycled", 0, 0.60, mode="adapter", codec="int4z"),
        run("recycled", 0, 0.795, mode="upper", codec="tc19"), run("recycled", 1, 0.71, mode="upper", codec="tc19"),
        run("recycled", 0, 0.50, mode="adapter", codec="tc19"),
        run("recycled", 2, 0.50, mode="adapter", codec="tc19"),  # no int4z run of seed 2: unpaired
    ]
    table = {r["mode"]: r for r in grid_table(rows, against="int4z")}
    assert set(table) == {"upper", "adapter"} and {r["codec"] for r in table.values()} == {"tc19"}
    assert table["upper"]["against"] == "int4z"
    assert table["upper"]["delta_points_mean"] == pytest.approx(0.25)  # (-0.5 + 1.0) / 2
    assert table["upper"]["baseline_accuracy_mean"] == pytest.approx(0.75)
    assert table["adapter"]["delta_points_mean"] == pytest.approx(-10.0) and table["adapter"]["seeds"] == [0, 2]
