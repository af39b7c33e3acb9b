"""Steps (erpack.runtime.progress): one bar over named steps, each counted once, closed at the end."""

from __future__ import annotations

from erpack.runtime.progress import Steps
from tests.checkers import Bars


def test_steps_count_each_step_once_and_name_it():
    bars, logged = Bars(), []
    steps = Steps(bars, total=2, desc="stage", log=logged.append)
    steps.start("first")
    steps.done("first done")
    steps.done()  # a second done() of the same step counts nothing
    steps.add(1)
    steps.start("second")
    steps.start("third")  # starting a step ends the one before it
    steps.close()
    steps.close()  # safe twice
    (bar,) = bars.bars
    assert bar["desc"] == "stage" and bar["descriptions"][1:] == ["stage: first", "stage: second", "stage: third"]
    assert bar["done"] == bar["total"] == 3 and bar["closed"] and logged == ["first done"]


def test_without_progress_only_the_log_hears():
    logged = []
    steps = Steps(None, total=3, desc="stage", log=logged.append)
    steps.start("a")
    steps.done("a done")
    steps.add(2)
    steps.total(9)
    steps.close()
    assert logged == ["a done"] and steps.bar is None


def test_one_home():
    """export and bench draw their step bars with this class, not copies of it."""
    import erpack.bench.runner as runner
    import erpack.export.build as build

    assert runner.Steps is Steps
    assert isinstance(build.Steps(Bars(), 1), Steps)
