"""Early exit in ONNX Runtime: the per-layer graphs erpack.depth.onnx writes, run with batch compaction.

    graphs = ExitGraphs("rt.exits")                 # checks exits.json and each graph's sha256
    logits, layers = graphs.run({"hidden_states": h, "attention_mask": m})

Torch-free: the rule (erpack.depth.rules) and the compaction loop (erpack.depth.compact) are the ones
the PyTorch runner uses, so both stop each document at the same layer given the same exit outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from erpack.checksums import file_sha256
from erpack.depth.compact import run_compacted
from erpack.depth.rules import Rule, check_threshold
from erpack.errors import ExportError, InputError
from erpack.runtime.session import create_session

GRAPHS_FILE = "exits.json"
GRAPHS_FORMAT = "erpack-exit-graphs"
REEXPORT = "export the task model again (erpack export TASK_MODEL -o FILE.onnx writes FILE.exits/ beside it)"


def is_exit_graphs(path) -> bool:
    return Path(path).is_dir() and (Path(path) / GRAPHS_FILE).is_file()


def read_graphs_record(folder) -> dict:
    """exits.json of an exit-graph folder, its graphs checked against their sha256 (ExportError names the file)."""
    folder = Path(folder)
    path = folder / GRAPHS_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: not a readable exits record ({exc}); {REEXPORT}") from None
    if not isinstance(info, dict) or info.get("format") != GRAPHS_FORMAT:
        raise ExportError(f"{path}: not an erpack exit-graphs record; {REEXPORT}")
    for name, sha in sorted((info.get("files") or {}).items()):
        if not (folder / name).is_file() or file_sha256(folder / name) != sha:
            raise ExportError(f"{folder / name}: missing or changed since export (sha256 differs); {REEXPORT}")
    return info


class ExitGraphs:
    """The per-layer graphs of a task model with exits, and its rule; `run` has a session's interface and
    gives [logits (B, C), layers (B,)]. `early_exit=False` runs every layer (the task head's answer)."""

    def __init__(self, folder, device: str = "cpu", threads: int | None = None, threshold: float | None = None,
                 early_exit: bool = True):
        self.path = Path(folder)
        self.info = read_graphs_record(self.path)
        self.layers = int(self.info["layers"])
        self.sessions = [create_session(self.path / f"layer-{j}.onnx", device, threads) for j in range(self.layers)]
        rule, t = self.info["early_exit"]["rule"], self.info["early_exit"]["threshold"]
        regression = self.info.get("task") == "regression"
        if threshold is not None:
            t = check_threshold(rule, threshold, len(self.info["labels"]), self.layers, regression)
        # --no-early-exit: patience over every layer never stops before the last
        self.rule = Rule(rule, t, regression) if early_exit else Rule("patience", self.layers)
        self.outputs = 1 if regression else len(self.info["labels"])  # a regression graph gives one score
        self.halting = bool(self.info.get("halting"))
        self.notes = list(self.sessions[0].notes)

    @property
    def provider(self) -> str:
        return self.sessions[0].provider

    @property
    def providers(self) -> list[str]:
        return self.sessions[0].providers

    def _layer(self, j, hidden, mask):
        out = self.sessions[j].run({"hidden_states": np.ascontiguousarray(hidden), "attention_mask": np.ascontiguousarray(mask)})
        if j == self.layers - 1:
            return None, out[0], None
        return out[0], out[1], (out[2] if self.halting else None)

    def run(self, feeds: dict):
        logits, layers = run_compacted(self.rule, self._layer, feeds["hidden_states"], feeds["attention_mask"],
                                       self.layers, self.outputs)
        return [logits, layers]


def refuse_exit_options(graph, threshold) -> None:
    """An exit option given with a graph that has no exits: InputError (exit 2) saying what to give instead."""
    if threshold is not None:
        raise InputError(f"{graph} is a graph without exits, so --exit-threshold does not apply; give the folder "
                         f"erpack export wrote beside it for a task model trained with --early-exit (NAME.exits or "
                         f"NAME.exits-int8)")
