"""`erpack export TASK_MODEL --bundle DIR` as a library call: everything a deployment needs, in one folder.

    s = write_bundle("models/rt", "bundles/rt", calibration_cache="caches/rt")   # a BundleSummary

1. The upper stack is exported and checked against PyTorch (erpack.export: fp32, and int8 dynamic
   unless quantize=False), then the lower stack for new text.
2. The encoder's tokenizer is found where the task model's cache recorded it (or `model`), checked
   against the recorded tokenizer settings, and saved; the `tokenizers` library must tokenize a
   set of probe texts exactly as it does (erpack.tokens), or nothing is written.
3. A fitted codec's state comes from `calibration_cache` (the cache the task model was trained on).
4. The bundle's runtime (erpack.deploy.runtime) predicts the probe texts and its logits are compared
   with PyTorch's (lower stack, codec round trip, upper stack): the difference is recorded.
   A token task's probes are compared over every real token; a task model with exits also gets its
   per-layer exit graphs (erpack.depth.onnx), and the layers each probe ran with them is recorded.
5. bundle.json, with every file's size and sha256, is written last, and the folder is published
   whole (erpack.store.atomic.atomic_folder): a kill leaves the old bundle or none, never a part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from erpack import __version__
from erpack.assets import resolve_model
from erpack.codecs import Pipeline
from erpack.corpus import Document
from erpack.deploy.bundle import BUNDLE_FILE, FORMAT, VERSION, Bundle, dump_bundle_manifest, file_entry
from erpack.deploy.runtime import BundleRuntime
from erpack.deploy.tokenizer import BundleTokenizer
from erpack.errors import BundleError
from erpack.export.build import _task_model, export_task_model
from erpack.models import recorded_location
from erpack.runtime.lower import run_lower
from erpack.runtime.progress import Steps
from erpack.store import CacheReader
from erpack.store.atomic import atomic_folder, write_atomic
from erpack.tasks import per_token
from erpack.tokens import tokenize

TOKENIZER_DIR = "tokenizer"
EXITS_DIR = "upper.exits"
CODEC_STATE = "codec-state.safetensors"
# Texts the bundle's tokenizer must split exactly as the encoder's: case, accents, punctuation,
# numbers, other scripts, whitespace runs, a pair, and one past any max_length.
PROBES = ["A fine, quietly moving film.", "DULL!!! and way   too long...", "Émile's café costs $4.50 (or 3€)",
          "日本語のテキストと emoji 🎬", "don't\twon't\nshouldn't", "x" * 3 + " word" * 600]
PROBE_PAIR = ("Is it good?", "It is very good, said the critic.")


@dataclass
class BundleSummary:
    """What write_bundle wrote. `as_dict()` is `erpack export --bundle --json`."""

    bundle: str
    task: str
    model: str | None
    layer: int
    files: dict
    bytes: int
    upper_parity: dict | None = None
    lower_parity: dict | None = None
    int8: dict | None = None  # the int8 graph's agreement with fp32, size and timing (erpack.export Variant)
    text_parity: dict | None = None  # the bundle's runtime against PyTorch on the probe texts
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _tokenizer(tm, model: str | None):
    """The encoder's transformers tokenizer, checked against the settings the cache recorded."""
    from transformers import AutoTokenizer

    where = model or recorded_location(tm.expected_cache["model"])
    try:
        tok = AutoTokenizer.from_pretrained(resolve_model(where))
    except Exception as exc:  # OSError, ValueError: not found, not a tokenizer
        raise BundleError(f"cannot load the tokenizer of {where} ({str(exc).splitlines()[0][:200]}); pass --model "
                          "with the encoder the task model's cache was made with") from None
    if not getattr(tok, "is_fast", False):
        raise BundleError(f"the tokenizer of {where} is not a fast (tokenizers) tokenizer, which a bundle needs")
    want = tm.expected_cache.get("tokenizer") or {}
    got = {"class": type(tok).__name__, "vocab_size": len(tok), "lowercase": bool(getattr(tok, "do_lower_case", False))}
    differs = [f"{k} {got[k]!r} (the cache recorded {want[k]!r})" for k in got if k in want and want[k] != got[k]]
    if differs:
        raise BundleError(f"the tokenizer of {where} is not the one the cache was made with: {'; '.join(differs)}; "
                          "pass --model with the encoder the cache was made with")
    return tok


def _save_tokenizer(tok, folder: Path, max_length: int) -> dict:
    """Save the tokenizer files; the `tokenizers` copy must tokenize the probes as transformers does."""
    folder.mkdir()
    tok.save_pretrained(folder)
    if not (folder / "tokenizer.json").is_file():
        raise BundleError("the tokenizer saved no tokenizer.json, which the bundle's runtime loads")
    types = "token_type_ids" in tok("a")
    settings = {"file": f"{TOKENIZER_DIR}/tokenizer.json", "token_type_ids": types,
                "pad_token_id": int(tok.pad_token_id or 0)}
    light = BundleTokenizer.from_file(folder / "tokenizer.json", types, settings["pad_token_id"])
    docs = [Document(f"p{i}", t) for i, t in enumerate(PROBES)] + [Document("pair", *PROBE_PAIR)]
    ours, theirs = tokenize(light, docs, max_length), tokenize(tok, docs, max_length)
    for d, a, b in zip(docs, ours[0], theirs[0]):
        if a != b:
            raise BundleError(f"the tokenizers library splits probe text {d.text[:40]!r} differently from "
                              f"{type(tok).__name__} ({a['input_ids'][:12]} vs {b['input_ids'][:12]}); this "
                              "tokenizer cannot be bundled")
    return settings


def _codec_state(tm, reader, folder: Path) -> dict | None:
    codec = Pipeline.from_config(tm.expected_cache["codec"])
    if not codec.fitted:
        return None
    if reader is None or reader.codec.state is None:
        raise BundleError(f"the cache codec {codec.spec} is fitted to data: give --calibration-cache with the cache "
                          "the task model was trained on, whose fitted state the bundle carries")
    write_atomic(folder / CODEC_STATE, reader.codec.state.to_bytes())
    return {"file": CODEC_STATE, "sha256": file_entry(folder / CODEC_STATE)["sha256"]}


def _text_parity(tm, folder: Path, manifest: dict) -> dict:
    """The bundle's runtime on the probe texts against PyTorch (lower stack, codec round trip, upper): the
    plain upper graph (a token task's logits over every real token); with exit graphs also the layers each
    probe ran and how often the early answer equals the full stack's."""
    import torch

    rt = BundleRuntime(Bundle(folder, manifest), device="cpu", early_exit=False)
    docs = rt.text_documents([Document(f"p{i}", t) for i, t in enumerate(PROBES)]
                             + ([] if rt.token else [Document("pair", *PROBE_PAIR)]))
    ours, _ = rt.text_logits(docs)
    encoded, _ = tokenize(rt.tokenizer, docs, rt.bundle.max_length)
    hidden = run_lower(tm.lower, encoded, rt.tokenizer.pad_token_id, "cpu")
    ref = []
    for h, e in zip(hidden, encoded):
        h = rt.roundtrip(h, e["input_ids"])
        ref.append(tm.predict(torch.from_numpy(h)[None], torch.ones((1, h.shape[0]), dtype=torch.long))[0].numpy())
    ours, ref = (np.concatenate(ours), np.concatenate(ref)) if rt.token else (ours, np.stack(ref))  # (N or tokens, C)
    diff = np.abs(ours - ref)
    same = float((ours.argmax(1) == ref.argmax(1)).mean()) if ours.shape[1] > 1 else None
    out = {"texts": len(docs), "max_diff": float(diff.max()), "mean_diff": float(diff.mean()),
           "argmax_agreement": same}
    if rt.bundle.has_exits:
        early = BundleRuntime(rt.bundle, device="cpu").predict_texts(docs).rows
        out["exits"] = {"layers": [r["layers"] for r in early]}
        if same is not None:
            full = [tm.labels[k] if k < len(tm.labels) else k for k in ref.argmax(1)]
            out["exits"]["agreement_with_full"] = float(np.mean([r["predicted"] == f for r, f in zip(early, full)]))
    return out


def _task_extras(tm, steps: int | None) -> dict:
    """What the runtime reads beyond the kind: a token task's subwords rule, the ODE steps of an unrolled
    upper graph (tm.upper is then the OdeUpper export_task_model made), the exits' rule and threshold."""
    out = {}
    if per_token(tm.info):
        out["subwords"] = tm.info.get("subwords") or "first"
    if steps is not None:
        from erpack.depth.ode import graph_record

        out["ode"] = graph_record(tm, tm.upper)
    if isinstance(tm.info.get("early_exit"), dict):
        out["early_exit"] = {k: tm.info["early_exit"].get(k) for k in ("rule", "threshold")}
    return out


def _exit_graphs(task_model, tm, tmp: Path, quantize: bool) -> dict | None:
    """A task model with exits: its per-layer exit graphs (erpack.depth.onnx), fp32 and int8 unless not
    quantize, as `erpack export` writes them beside a graph. None for a task model without exits."""
    if not isinstance(tm.info.get("early_exit"), dict):
        return None
    from erpack.depth.onnx import export_exit_graphs
    from erpack.train import TaskModel

    source = task_model if isinstance(task_model, TaskModel) else TaskModel.load(task_model)
    out = {}
    for variant, name in (("fp32", EXITS_DIR), ("int8", f"{EXITS_DIR}-int8"))[: 2 if quantize else 1]:
        export_exit_graphs(source, tmp / name, int8=variant == "int8", source=getattr(source, "path", None))
        out[variant] = name
    return out


def write_bundle(task_model, output, model: str | None = None, calibration_cache=None, quantize: bool = True,
                 overwrite: bool = False, progress=None, ode_steps: int | None = None) -> BundleSummary:
    """Write the bundle of `task_model` (a folder or TaskModel) into the folder `output` (see module doc).
    A token task's bundle records its subwords rule; a task model with exits adds its exit graphs;
    `ode_steps`: a task model with a shared upper block, its upper graph unrolled for that many ODE steps."""
    out = Path(output)
    steps = Steps(progress, 5, desc="bundle")
    steps.start("load the task model")
    tm = _task_model(task_model)
    if tm.input == "text":
        raise BundleError(f"task model {task_model} computes from text (a baseline): a bundle serves task models "
                          "that run from a cache's layer-k states; export the baseline with --part full")
    if ode_steps is not None and isinstance(tm.info.get("early_exit"), dict):
        raise BundleError(f"task model {task_model} has exits: a bundle runs them layer by layer, or its ODE steps "
                          "unrolled, not both; bundle it without --steps (its exits), or bundle a task model "
                          "with a shared block and no exits with --steps")
    reader = CacheReader(calibration_cache) if calibration_cache is not None else None
    notes: list[str] = []
    try:
        with atomic_folder(out, overwrite, what="bundle", notes=notes) as tmp:
            steps.start("export and check the upper stack" + (" and its int8 graph" if quantize else ""))
            upper = export_task_model(tm, tmp / "upper.onnx", part="upper", quantize="dynamic" if quantize else None,
                                      calibration_cache=calibration_cache, ode_steps=ode_steps)
            exits = _exit_graphs(task_model, tm, tmp, quantize)
            steps.start("export and check the lower stack")
            lower = export_task_model(tm, tmp / "lower.onnx", part="lower")
            steps.start("save and check the tokenizer")
            cache = dict(tm.expected_cache)
            tokenizer = _save_tokenizer(_tokenizer(tm, model), tmp / TOKENIZER_DIR, int(cache["max_length"]))
            cache["codec_state"] = _codec_state(tm, reader, tmp)
            graphs = {"upper": {"fp32": "upper.onnx"}, "lower": {"fp32": "lower.onnx"}}
            int8 = upper.variant("int8-dynamic")
            if int8 is not None:
                graphs["upper"]["int8"] = Path(int8.path).name
            if exits is not None:
                graphs["exits"] = exits
            manifest = {"format": FORMAT, "format_version": VERSION, "erpack": __version__,
                        "task": {"kind": tm.task, "labels": tm.labels, "mode": tm.mode, "layer": tm.layer,
                                 "source": None if tm.path is None else str(tm.path),
                                 "task_checksum": tm.info.get("checksum"), **_task_extras(tm, ode_steps)},
                        "cache": cache, "graphs": graphs, "tokenizer": tokenizer,
                        "export": {"upper_parity": upper.parity, "lower_parity": lower.parity,
                                   "int8": None if int8 is None else {"agreement": int8.agreement,
                                                                      "size_ratio": int8.size_ratio,
                                                                      "timing": int8.timing}}}
            steps.start("check the bundle's runtime against PyTorch on probe texts")
            manifest["files"] = {p.relative_to(tmp).as_posix(): file_entry(p) for p in sorted(tmp.rglob("*"))
                                 if p.is_file()}
            manifest["export"]["text_parity"] = _text_parity(tm, tmp, manifest)
            write_atomic(tmp / BUNDLE_FILE, dump_bundle_manifest(manifest))
    finally:
        steps.close()
        if reader is not None:
            reader.close()
    files = manifest["files"]
    return BundleSummary(str(out), tm.task, (cache.get("model") or {}).get("name"), tm.layer, files,
                         sum(f["bytes"] for f in files.values()) + (out / BUNDLE_FILE).stat().st_size,
                         upper.parity, lower.parity, manifest["export"]["int8"], manifest["export"]["text_parity"],
                         upper.notes + notes)


__all__ = ["BundleSummary", "write_bundle"]
