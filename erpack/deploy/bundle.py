"""A deployment bundle on disk: one folder, described and sealed by bundle.json. No torch here.

    bundle/
      bundle.json                      what the bundle is (below), sealed by its checksum, written last
      upper.onnx                       the upper stack (cached states -> logits), fp32
      upper.int8-dynamic.onnx          the same, int8 weights (when exported with it)
      lower.onnx                       embeddings + layers 0..k-1 (token ids -> states), for new text
      tokenizer/tokenizer.json, ...    the encoder's tokenizer files (what `tokenizers` loads, and the rest)
      codec-state.safetensors          the cache codec's fitted state, when the codec learns one
      upper.exits/, upper.exits-int8/  a task model with exits: one graph per upper layer with its exit, and
                                       exits.json (erpack.depth.onnx), run with batch compaction

bundle.json (canonical JSON, sorted keys, 2-space indent; `checksum` is "sha256:" of the canonical
bytes without it, as a cache manifest is sealed, erpack.store.manifest):

    {"format": "erpack-bundle", "format_version": 1, "erpack": "0.1.0",
     "task": {"kind", "labels", "mode", "layer", "source", "task_checksum",
              "subwords"?: a token task's rule (erpack.words), "ode"?: an ODE-step graph's {"steps", ...},
              "early_exit"?: {"rule", "threshold"} of a task model with exits},
     "cache": {"model": {name, model_type, weights_sha256, ...}, "layer", "max_length", "tokenizer",
               "codec", "codec_spec", "codec_state": null | {"file", "sha256"}},
     "graphs": {"upper": {"fp32": FILE, "int8": FILE?}, "lower": {"fp32": FILE},
                "exits"?: {"fp32": FOLDER, "int8": FOLDER?}},
     "tokenizer": {"file", "token_type_ids", "pad_token_id"},
     "export": {parity and agreement figures of the graphs},
     "files": {NAME: {"bytes", "sha256"}}, "checksum": "sha256:..."}

`Bundle.load(folder)` checks the seal and every listed file's size and sha256 (a bundle is small:
about 0.1 s a 100 MB), and raises BundleError naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from erpack.errors import BundleError
from erpack.store.manifest import manifest_checksum

BUNDLE_FILE = "bundle.json"
FORMAT = "erpack-bundle"
VERSION = 1
CHECKSUM = "checksum"
VARIANTS = ("fp32", "int8")
REEXPORT = "export it again with `erpack export TASK_MODEL --bundle DIR`"


def canonical(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def dump_bundle_manifest(doc: dict) -> bytes:
    """The bytes of bundle.json: canonical JSON sealed with a fresh checksum."""
    body = {k: v for k, v in doc.items() if k != CHECKSUM}
    body[CHECKSUM] = manifest_checksum(body)
    return canonical(body)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": file_digest(path)}


def is_bundle(folder) -> bool:
    return (Path(folder) / BUNDLE_FILE).is_file()


def read_bundle_manifest(folder) -> dict:
    """bundle.json of `folder`, its seal and structure checked (BundleError otherwise)."""
    path = Path(folder) / BUNDLE_FILE
    if not Path(folder).is_dir():
        raise BundleError(f"{folder} is not a folder: give the bundle folder `erpack export --bundle` wrote")
    if not path.is_file():
        raise BundleError(f"{folder} is not a bundle: it has no {BUNDLE_FILE} (an incomplete copy, or another "
                          f"folder); {REEXPORT}")
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}): the bundle is damaged; copy it again or {REEXPORT}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(f"{path} is not an erpack bundle manifest (its 'format' is not {FORMAT!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BundleError(f"{path} has format_version {version!r}: the bundle is damaged; {REEXPORT}")
    if version > VERSION:
        raise BundleError(f"{path} has format_version {version}; this erpack reads bundles up to version {VERSION}: "
                          "upgrade erpack")
    if doc.get(CHECKSUM) != manifest_checksum(doc) or raw != canonical(doc):
        raise BundleError(f"{path} fails its checksum: it changed after erpack wrote it (damage or a hand edit); "
                          f"copy the bundle again or {REEXPORT}")
    for key in ("task", "cache", "graphs", "tokenizer", "files"):
        if not isinstance(doc.get(key), dict):
            raise BundleError(f"{path} lacks {key!r}: the bundle is damaged; {REEXPORT}")
    return doc


def check_file(folder: Path, name: str, entry: dict, digest: bool = True) -> str | None:
    """What is wrong with one listed file (None: it checks out)."""
    path = folder / name
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != entry.get("bytes"):
        return f"{size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced)"
    if digest and file_digest(path) != entry.get("sha256"):
        return "sha256 differs from the manifest's (the bytes changed)"
    return None


@dataclass
class Bundle:
    """A bundle folder and its checked manifest."""

    folder: Path
    manifest: dict

    @classmethod
    def load(cls, folder, check_files: bool = True) -> Bundle:
        """The bundle in `folder`; with check_files every listed file's size and sha256 is checked."""
        folder = Path(folder)
        doc = read_bundle_manifest(folder)
        if check_files:
            for name, entry in sorted(doc["files"].items()):
                problem = check_file(folder, name, entry)
                if problem:
                    raise BundleError(f"bundle {folder}: {name} is {problem}: the bundle is damaged or incomplete; "
                                      f"copy it again or {REEXPORT} (`erpack verify {folder}` lists every problem)")
        return cls(folder, doc)

    @property
    def task(self) -> str:
        return self.manifest["task"]["kind"]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["task"].get("labels") or [])

    @property
    def cache(self) -> dict:
        """The identity of the cache the bundle serves (erpack.fit's expected-cache record)."""
        return self.manifest["cache"]

    @property
    def max_length(self) -> int:
        return int(self.manifest["cache"]["max_length"])

    @property
    def has_exits(self) -> bool:
        """Does it carry the per-layer exit graphs of a task model trained with --early-exit?"""
        return bool(self.manifest["graphs"].get("exits"))

    def variants(self) -> list[str]:
        return sorted(self.manifest["graphs"]["upper"])

    def graph(self, part: str, variant: str = "fp32") -> Path:
        graphs = self.manifest["graphs"].get(part) or {}
        if variant not in graphs:
            raise BundleError(f"bundle {self.folder} has no {variant} {part} graph (it has: "
                              f"{', '.join(sorted(graphs)) or 'none'}); choose one of those, or {REEXPORT}")
        return self.folder / graphs[variant]

    def path(self, name: str) -> Path:
        return self.folder / name
