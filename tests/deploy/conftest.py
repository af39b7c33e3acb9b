"""Fixtures of the deployment tests: the export tests' tiny BERT, cache and task model, and one bundle
written from them (session-scoped: exported once); bundles of a token task (the export tests' `tok`) and of
a task model with exits (the depth tests' `dact_model`)."""

from __future__ import annotations

import pytest

from tests.depth.conftest import dact_model, tiny_exit  # noqa: F401  (the fixtures, shared)
from tests.export.conftest import tiny, tok  # noqa: F401  (the fixtures, shared)


@pytest.fixture(scope="session")
def bundle(tiny):  # noqa: F811
    """(folder, BundleSummary) of the tiny task model, with its int8 graph, calibrated on its cache."""
    from erpack.deploy.build import write_bundle

    out = tiny["root"] / "bundle"
    summary = write_bundle(tiny["task_model"], out, model=str(tiny["folder"]), calibration_cache=tiny["cache"])
    return out, summary


@pytest.fixture(scope="module")
def token_bundle(tok):  # noqa: F811
    """(folder, BundleSummary) of the tiny token-classification model (fp32 and int8)."""
    from erpack.deploy.build import write_bundle

    out = tok["root"] / "token-bundle"
    summary = write_bundle(tok["tm"], out, model=str(tok["folder"]), calibration_cache=tok["cache"])
    return out, summary


@pytest.fixture(scope="module")
def exit_bundle(dact_model, tiny_exit, tmp_path_factory):  # noqa: F811
    """(folder, BundleSummary) of the tiny task model with dact exits (fp32 and int8 exit graphs)."""
    from erpack.deploy.build import write_bundle

    out = tmp_path_factory.mktemp("exit-bundle") / "bundle"
    summary = write_bundle(dact_model[0], out, model=str(tiny_exit["model"]), calibration_cache=tiny_exit["cache"])
    return out, summary
