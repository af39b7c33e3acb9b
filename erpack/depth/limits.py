"""What `--steps` may be, checked without torch (predict serves ONNX graphs without it).

An exported ODE graph is unrolled for one step count: its metadata holds `"ode": {"steps": S, "beta":
b, "steps_trained": L-k}` (erpack export --steps S). `check_graph_steps` refuses --steps on a graph
without it, or with another S (export one per S).
"""

from __future__ import annotations

from erpack.errors import ExportError, InputError

MAX_STEP_FACTOR = 4  # at most 4 x (L-k) steps: beyond it a step is smaller than a quarter layer


def check_step_range(steps, n: int, where) -> int:
    """`steps` if it is an integer in 1..MAX_STEP_FACTOR x n (n = L-k), else InputError."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEP_FACTOR * n:
        raise InputError(f"--steps {steps!r}: must be an integer from 1 to {MAX_STEP_FACTOR * n} "
                         f"({MAX_STEP_FACTOR} x the {n} upper layers of {where}); {n} runs the stack as trained")
    return steps


def graph_steps(info: dict) -> int | None:
    """The step count an upper graph was unrolled for, None for a plain upper stack."""
    ode = info.get("ode")
    return int(ode["steps"]) if isinstance(ode, dict) and "steps" in ode else None


def check_graph_steps(info: dict, steps: int | None, graph) -> int | None:
    """The graph's step count; ExportError when `steps` is asked of a graph without ODE steps or another S."""
    have = graph_steps(info)
    if steps is None:
        return have
    if have is None:
        raise ExportError(f"{graph}: not an ODE-step graph, so --steps does not apply; export one from a task model "
                          f"with a shared block: erpack export TASK_MODEL -o NAME.onnx --steps {steps}")
    if steps != have:
        raise ExportError(f"{graph} runs {have} steps (it is unrolled for one step count), not {steps}; export "
                          f"another: erpack export TASK_MODEL -o NAME-s{steps}.onnx --steps {steps}")
    return have
