"""The docs hold together: every relative link resolves, and the guides are guides, not run logs.

A guide in docs/*.md says what a part is, how to use it, what to expect and its limits; dated runs
and their tables live in docs/results/ (docs/results/README.md says which command writes each).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
GUIDES = sorted(DOCS.glob("*.md"))

# Result files a tool writes that a fresh checkout may not hold yet: link target -> the command.
GENERATED = {"docs/results/fault-drill.md": "python tools/fault_drill.py --write-results"}

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
DATED_HEADING = re.compile(r"^#+ .*20\d\d-\d\d-\d\d")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks, inline code blanked out."""
    out, fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            out.append((number, re.sub(r"`[^`]*`", "``", line)))
    return out


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def heading_anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    fence = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        m = None if fence else re.match(r"#+\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(page: Path) -> list[tuple[int, str]]:
    links = []
    for number, line in prose_lines(page.read_text()):
        for target in LINK.findall(line):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                links.append((number, target))
    return links


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for number, target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        rel = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
        if not dest.exists():
            if rel not in GENERATED:
                broken.append(f"line {number}: {target} (no {rel})")
            continue
        if anchor and dest.suffix == ".md" and anchor not in heading_anchors(dest):
            broken.append(f"line {number}: {target} (no heading '#{anchor}' in {rel})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_generated_results_name_their_command():
    """A result file allowed to be missing is one the results index names with the command that writes it."""
    index = (DOCS / "results" / "README.md").read_text()
    for target, command in GENERATED.items():
        assert Path(target).name in index and command in index, (target, command)


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.name)
def test_guides_hold_no_dated_run_headings(page):
    dated = [f"line {n}: {line}" for n, line in prose_lines(page.read_text()) if DATED_HEADING.match(line)]
    assert not dated, (f"{page.relative_to(ROOT)} holds dated run logs; move them to docs/results/ "
                       "(see docs/results/README.md):\n" + "\n".join(dated))


def test_the_link_checker_finds_links_and_broken_ones(tmp_path):
    """The checker itself: it sees links outside code, skips code, and knows a missing heading."""
    page = tmp_path / "p.md"
    page.write_text("# A `b` (c)\n[x](q.md) ![i](img/a.png) [y](#a-b-c) [w](https://x.org)\n"
                    "```\n[not](a link)\n```\n`[nor](this)`\n")
    assert relative_links(page) == [(2, "q.md"), (2, "img/a.png"), (2, "#a-b-c")]
    assert heading_anchors(page) == {"a-b-c"}
    assert slug("Epoch time (criterion: ratio <= 0.55 at k = L/2)") == "epoch-time-criterion-ratio--055-at-k--l2"
    assert DATED_HEADING.match("### 2026-11-30 (second run): MiniLM")
    assert not DATED_HEADING.match("Until 2026-11-30 the pooler stayed frozen")


def modules_named(text: str) -> set[str]:
    """The erpack modules a table row of docs/architecture.md names in its first column: full paths, and
    the short names after one (`erpack/codecs/int8c.py`, `int4c.py` names erpack/codecs/int4c.py too)."""
    named = set()
    for line in text.splitlines():
        if not line.startswith("| `erpack"):
            continue
        paths = re.findall(r"`([^`]+)`", line.split("|")[1])
        folder = paths[0].rsplit("/", 1)[0]
        named |= {p if p.startswith("erpack/") else f"{folder}/{p}" for p in paths}
    return named


def test_architecture_names_every_module():
    """A newcomer finds every module of erpack/ (packages' __init__.py too) in docs/architecture.md, and
    every module it names exists."""
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "erpack").rglob("*.py")}
    named = modules_named((DOCS / "architecture.md").read_text())
    assert not modules - named, f"docs/architecture.md has no row for {sorted(modules - named)}"
    assert not named - modules, f"docs/architecture.md names modules that do not exist: {sorted(named - modules)}"


def test_the_module_checker_reads_short_names():
    rows = "| `erpack/codecs/int8c.py`, `int4c.py` | codes | x |\n| `erpack/fit.py` | the rule | y |\nerpack/tokens.py\n"
    assert modules_named(rows) == {"erpack/codecs/int8c.py", "erpack/codecs/int4c.py", "erpack/fit.py"}
