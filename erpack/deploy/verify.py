"""`erpack verify BUNDLE`: every byte of a bundle checked, every problem listed (never raises on damage).

Checked: bundle.json's seal and structure; each listed file's presence, size and sha256; files in the
folder the manifest does not list (a warning); each graph loads in onnxruntime, is the part the
manifest says, and records the cache identity the manifest records (weights sha256, layer); the
tokenizer loads with `tokenizers`; the codec config (and fitted state) loads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from erpack.codecs import Pipeline
from erpack.codecs.state import FittedState
from erpack.deploy.bundle import BUNDLE_FILE, check_file, read_bundle_manifest
from erpack.deploy.tokenizer import BundleTokenizer
from erpack.depth.ort import GRAPHS_FILE, ExitGraphs
from erpack.errors import ErpackError
from erpack.runtime.session import create_session


@dataclass
class BundleReport:
    """What verify_bundle found. ok: no failure; `as_dict()` is `erpack verify BUNDLE --json`."""

    path: str
    files: int = 0
    bytes: int = 0
    failures: list[dict] = field(default_factory=list)  # {"file", "error"}
    warnings: list[str] = field(default_factory=list)
    graphs: dict = field(default_factory=dict)  # "part/variant" -> provider it loaded on

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return dict(asdict(self), ok=self.ok, kind="bundle")


def _graph_meta(session) -> dict:
    raw = dict(session.session.get_modelmeta().custom_metadata_map).get("erpack")
    return json.loads(raw) if raw else {}


def _check_graph(folder: Path, part: str, variant: str, name: str, manifest: dict, report: BundleReport) -> None:
    try:
        sess = create_session(folder / name, "cpu")
        meta = _graph_meta(sess)
    except (ErpackError, ValueError) as exc:
        report.failures.append({"file": name, "error": f"does not load: {exc}"})
        return
    report.graphs[f"{part}/{variant}"] = sess.provider
    want, got = manifest["cache"], meta.get("cache") or {}
    if meta.get("part") != part:
        report.failures.append({"file": name, "error": f"is the {meta.get('part')!r} part, the manifest says {part!r}"})
    for key, a, b in (("weights sha256", (want.get("model") or {}).get("weights_sha256"),
                       (got.get("model") or {}).get("weights_sha256")), ("layer", want.get("layer"), got.get("layer"))):
        if a != b:
            report.failures.append({"file": name, "error": f"records {key} {b!r}, the manifest {a!r}"})


def _check_exits(folder: Path, variant: str, name: str, manifest: dict, report: BundleReport, damaged: set) -> None:
    """A folder of exit graphs (erpack.depth.ort): its exits.json and graphs listed and intact, each graph
    loading, and the cache identity its record holds equal to the manifest's."""
    files = [f for f in manifest["files"] if f.startswith(f"{name}/")]
    if f"{name}/{GRAPHS_FILE}" not in files:
        report.failures.append({"file": name, "error": f"the exits/{variant} graphs are not listed in {BUNDLE_FILE}"})
        return
    if damaged & set(files):
        return
    try:
        graphs = ExitGraphs(folder / name, "cpu")
    except (ErpackError, ValueError) as exc:
        report.failures.append({"file": name, "error": f"does not load: {exc}"})
        return
    report.graphs[f"exits/{variant}"] = graphs.provider
    want, got = manifest["cache"], graphs.info.get("cache") or {}
    for key, a, b in (("weights sha256", (want.get("model") or {}).get("weights_sha256"),
                       (got.get("model") or {}).get("weights_sha256")), ("layer", want.get("layer"), got.get("layer"))):
        if a != b:
            report.failures.append({"file": f"{name}/{GRAPHS_FILE}", "error": f"records {key} {b!r}, the manifest {a!r}"})


def verify_bundle(folder) -> BundleReport:
    """Check the bundle in `folder` (BundleError only when it is no bundle at all or its manifest is damaged)."""
    folder = Path(folder)
    doc = read_bundle_manifest(folder)
    report = BundleReport(str(folder))
    for name, entry in sorted(doc["files"].items()):
        report.files += 1
        report.bytes += int(entry.get("bytes") or 0)
        problem = check_file(folder, name, entry)
        if problem:
            report.failures.append({"file": name, "error": problem})
    listed = set(doc["files"]) | {BUNDLE_FILE}
    extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                   and p.relative_to(folder).as_posix() not in listed)
    report.warnings += [f"{name} is not listed in {BUNDLE_FILE} (not part of the bundle; ignored)" for name in extra]
    damaged = {f["file"] for f in report.failures}
    for part, variants in sorted(doc["graphs"].items()):
        for variant, name in sorted(variants.items()):
            if part == "exits":
                _check_exits(folder, variant, name, doc, report, damaged)
            elif name not in doc["files"]:
                report.failures.append({"file": name, "error": f"the {part}/{variant} graph is not listed in {BUNDLE_FILE}"})
            elif name not in damaged:
                _check_graph(folder, part, variant, name, doc, report)
    tok = doc["tokenizer"]
    if tok.get("file") not in damaged:
        try:
            BundleTokenizer.from_file(folder / tok["file"], bool(tok.get("token_type_ids")), int(tok.get("pad_token_id") or 0))
        except ErpackError as exc:
            report.failures.append({"file": tok.get("file"), "error": str(exc)})
    state = doc["cache"].get("codec_state")
    try:
        st = None
        if state and state["file"] not in damaged:
            st = FittedState.from_bytes((folder / state["file"]).read_bytes(), source=str(folder / state["file"]))
        if not state or state["file"] not in damaged:
            Pipeline.from_config(doc["cache"]["codec"], state=st)
    except (ErpackError, OSError, KeyError, TypeError) as exc:
        report.failures.append({"file": (state or {}).get("file") or BUNDLE_FILE, "error": f"codec: {exc}"})
    return report
