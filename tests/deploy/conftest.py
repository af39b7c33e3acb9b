"""Fixtures of the deployment tests: the export tests' tiny BERT, cache and task model, and one bundle
written from them (session-scoped: exported once)."""

from __future__ import annotations

import pytest

from tests.export.conftest import tiny  # noqa: F401  (the fixture, shared)


@pytest.fixture(scope="session")
def bundle(tiny):  # noqa: F811
    """(folder, BundleSummary) of the tiny task model, with its int8 graph, calibrated on its cache."""
    from erpack.deploy.build import write_bundle

    out = tiny["root"] / "bundle"
    summary = write_bundle(tiny["task_model"], out, model=str(tiny["folder"]), calibration_cache=tiny["cache"])
    return out, summary
