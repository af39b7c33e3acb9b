"""Every encoder of the installed transformers: supported ones split at every k within TOL, the others
are refused with a reason or cannot be fed token ids; docs/models.md is the sweep's current page."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from erpack.models.layers import ARCHITECTURES, REFUSED
from tests.models.sweep import TOL, encoder_types, sweep_all

ROOT = Path(__file__).resolve().parents[2]
MUST_SPLIT = ["albert", "modernbert", "data2vec-text", "roberta-prelayernorm", "esm", "bert", "roberta", "distilbert",
              "electra", "deberta", "deberta-v2", "mpnet", "xlm-roberta", "camembert"]


def _results():
    return {r.model_type: r for r in sweep_all()}


@pytest.mark.parametrize("model_type", encoder_types())
def test_every_encoder_splits_or_says_why(model_type):
    r = _results()[model_type]
    assert r.status != "failed", f"{model_type}: {r.reason} (fix the split or add it to erpack/models/layers.py)"
    if r.status == "supported":
        assert len(r.diffs) == r.layers + 1 and r.max_diff <= TOL
    else:
        assert r.reason


@pytest.mark.parametrize("model_type", MUST_SPLIT)
def test_named_architectures_are_supported(model_type):
    assert _results()[model_type].status == "supported"


def test_tables_name_only_encoders():
    """Every entry of the tables is an encoder of this transformers, or a model_type it does not know yet."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    named = (set(ARCHITECTURES) | set(REFUSED)) & set(CONFIG_MAPPING_NAMES)
    assert named <= set(encoder_types())


def test_models_page_is_current():
    import transformers

    page = (ROOT / "docs" / "models.md").read_text()
    if f"on transformers\n{transformers.__version__};" not in page:
        pytest.skip(f"docs/models.md was generated on another transformers than {transformers.__version__}")
    spec = importlib.util.spec_from_file_location("models_doc", ROOT / "tools" / "models_doc.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.render(sweep_all(), transformers.__version__) == page, "docs/models.md is out of date: run tools/models_doc.py"
