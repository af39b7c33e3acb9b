"""A cache made from a local model folder records the model by name and weights sha256, the folder
only as a hint: when the folder moves, train says so and takes `--model FOLDER`, checked by sha256."""

from __future__ import annotations

import pytest

from erpack.cli import main
from erpack.errors import AssetError, ManifestMismatchError
from erpack.models import load_recorded
from erpack.store import CacheReader
from tests.train.conftest import make_corpus, make_model_folder, write_cache, write_jsonl


@pytest.fixture
def moved(tmp_path):
    """A cache made from tmp/encoder, whose folder then moved to tmp/elsewhere/encoder."""
    import transformers

    transformers.logging.set_verbosity_error()
    folder = make_model_folder(tmp_path / "encoder")
    rows = make_corpus(24)
    cache = write_cache(tmp_path / "cache", folder, rows)
    (tmp_path / "elsewhere").mkdir()
    new = folder.rename(tmp_path / "elsewhere" / "encoder")
    return {"cache": cache, "labels": write_jsonl(tmp_path / "labels.jsonl", rows), "old": folder, "new": new,
            "root": tmp_path}


def test_the_cache_records_the_name_and_the_folder_as_a_hint(moved):
    with CacheReader(moved["cache"]) as r:
        ident = r.meta["model"]
    assert ident["name"] == "encoder" and ident["path"] == str(moved["old"].resolve())
    assert len(ident["weights_sha256"]) == 64


def test_a_moved_folder_is_named_with_its_sha256_and_found_with_model(moved, capsys):
    with CacheReader(moved["cache"]) as r:
        ident = r.meta["model"]
    argv = ["train", str(moved["cache"]), "--labels", str(moved["labels"]), "--epochs", "1", "--mode", "head"]
    assert main(argv + ["-o", str(moved["root"] / "a")]) == 2
    err = capsys.readouterr().err
    assert str(moved["old"].resolve()) in err and "no longer exists" in err
    assert ident["weights_sha256"] in err and "--model FOLDER" in err
    assert main(argv + ["-o", str(moved["root"] / "b"), "--model", str(moved["new"])]) == 0


def test_model_is_checked_against_the_recorded_sha256(moved, tmp_path):
    other = make_model_folder(tmp_path / "other", seed=1)
    with CacheReader(moved["cache"]) as r:
        ident = r.meta["model"]
    with pytest.raises(ManifestMismatchError, match="weights sha256"):
        load_recorded(ident, str(other))
    assert load_recorded(ident, str(moved["new"])).sha256 == ident["weights_sha256"]


def test_an_older_cache_naming_a_folder_that_moved(moved):
    """Caches written before the hint recorded the folder as the name: the same message."""
    with CacheReader(moved["cache"]) as r:
        ident = dict(r.meta["model"])
    ident.pop("path")
    ident["name"] = str(moved["old"].resolve())
    with pytest.raises(AssetError, match="no longer exists.*--model FOLDER"):
        load_recorded(ident)
