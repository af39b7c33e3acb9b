"""A results page (docs/results/NAME.md): a title, the command that made it, the machine, then tables.

    write_page("docs/results/training.md", "Training from the cache", command_line(sys.argv), machine, lines)

Pages are rendered from result files by the tool that produced them (its `--results` option), never
edited by hand: a second run of the command rewrites the page. `publish(path, text, check, tool)` writes a
rendered page or, with check, says whether it is stale (`Published.rc`, `.message`: the tool prints it).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from erpack.store.atomic import write_atomic


def command_line(argv: list[str] | None = None) -> str:
    """`python tools/SCRIPT ARGS...` as it was run, each argument quoted for the shell where it needs it
    (a --note with spaces copies back as one); a script given by its absolute path is named from the
    folder above its own (the repository, for the scripts in tools/)."""
    argv = [str(a) for a in (sys.argv if argv is None else argv)]
    script = Path(argv[0])
    if script.is_absolute():
        argv[0] = str(script.relative_to(script.parents[1]))
    return "python " + shlex.join(argv)


def machine_line(machine: dict) -> str:
    """One line of erpack.runtime.timing.describe_machine's dict: CPU, cores, threads, versions."""
    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("versions") or {}).items() if v)
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    return (f"{machine.get('cpu')}, {machine.get('usable_cores')} usable cores{gpu}, torch threads "
            f"{machine.get('torch_threads')}, Python {machine.get('python')} ({versions})")


def first_n_note(limit: int | None, record: dict) -> str:
    """A note for a result made with `--train-limit N` before it took a seeded hash sample (a record without
    `train_subset`, erpack.train.labels.TRAIN_SUBSET): then the run trained on the first N; else ""."""
    if limit is None or record.get("train_subset"):
        return ""
    return (f" (the first {limit}: `--train-limit` took the first N training documents until 2026-12-01, a seeded "
            "hash sample since)")


def write_page(path, title: str, command: str, machine: dict | str, body: list[str]) -> Path:
    """Write the page atomically: `# title`, the command and the machine, a blank line, `body`."""
    path = Path(path)
    where = machine if isinstance(machine, str) else machine_line(machine)
    text = "\n".join([f"# {title}", "", f"Made by `{command}`", f"on {where}.", "", *body]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())
    return path


@dataclass(frozen=True)
class Published:
    """What `publish` did: `stale` (with check: the page differs from what its files render), and `message`,
    the line for the tool to print to stderr ("" when there is nothing to say)."""

    path: Path
    stale: bool = False
    message: str = ""

    @property
    def rc(self) -> int:
        """The tool's exit status: 1 when the page is stale, else 0."""
        return 1 if self.stale else 0


def publish(path, text: str, check: bool, tool: str) -> Published:
    """A generated doc page: with `check`, compare `path` with `text` (stale: a message naming `tool` to
    rerun, what a test calls so that the page cannot go stale); without, write it. The caller prints."""
    path = Path(path)
    if check:
        if (path.read_text() if path.exists() else "") != text:
            return Published(path, True, f"{path.parent.name}/{path.name} is out of date: run {tool}")
        return Published(path)
    write_atomic(path, text.encode("utf-8"))
    return Published(path)
