"""The import graph of erpack has no cycles, and torch-free modules are imported at the top of a file.

The graph is read from the source (ast), with every `import erpack...` and `from erpack... import`
as an edge, at the top of a module or inside a function alike: an import moved into a function to
dodge a circle is still a circle. `from erpack.a import b` points at the module erpack.a.b when
there is one, else at erpack.a. Importing erpack.a.b from outside erpack.a runs erpack/a/__init__.py
first, so that is an edge to the package too; from inside erpack.a it is not (the package is
already being imported, which is how every package here exposes its modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import erpack

ROOT = Path(erpack.__file__).parent
# Libraries a function may import where it uses them: heavy or optional.
HEAVY = {"torch", "transformers", "onnx", "onnxruntime", "onnxscript", "bitsandbytes", "peft", "matplotlib",
         "optimum", "tqdm", "fastapi", "uvicorn", "prometheus_client", "starlette"}


def module_files() -> dict[str, Path]:
    out = {}
    for f in sorted(ROOT.rglob("*.py")):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(tree: ast.AST, modules: dict[str, Path]) -> list[tuple[str, ast.stmt, bool]]:
    """(imported erpack module, the statement, inside a function?) for every erpack import of a module."""
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, child, in_function) for a in child.names if a.name.startswith("erpack"))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("erpack"):
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in modules else child.module, child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def packages_entered(m: str, target: str) -> list[str]:
    """The packages whose __init__ runs when module m imports `target` (its parents outside m's own)."""
    parts = target.split(".")
    parents = [".".join(parts[:i]) for i in range(2, len(parts))]
    return [p for p in parents if not (m == p or m.startswith(p + "."))]


def graph() -> dict[str, set[str]]:
    modules = module_files()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, f in modules.items():
        for target, _, _ in imports(ast.parse(f.read_text()), modules):
            if target != m and target in modules:
                edges[m] |= {target} | set(packages_entered(m, target))
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = 2
        path.pop()
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_erpack_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def heavy_modules(modules: dict[str, Path]) -> set[str]:
    """erpack modules whose import (top-level, transitively, with their packages) loads a heavy library."""
    top: dict[str, set[str]] = {}
    direct: set[str] = set()
    for m, f in modules.items():
        tree = ast.parse(f.read_text())
        top[m] = {t for t, _, in_fn in imports(tree, modules) if not in_fn and t in modules}
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in HEAVY for n in names):
                direct.add(m)
    heavy = set()
    for m in modules:
        seen, stack = set(), [m]
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack += list(top[x]) + ([x.rpartition(".")[0]] if "." in x else [])
        if seen & direct:
            heavy.add(m)
    return heavy




def test_torch_free_modules_are_imported_at_the_top():
    """A function imports an erpack module only when that module loads torch or another heavy library."""
    modules = module_files()
    heavy = heavy_modules(modules)
    late = sorted({f"{m} imports {t} in a function (line {stmt.lineno})"
                   for m, f in modules.items()
                   for t, stmt, in_fn in imports(ast.parse(f.read_text()), modules)
                   if in_fn and t != m and t not in heavy})
    assert not late, "\n".join(late)
