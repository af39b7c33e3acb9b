"""The split on the two real pretrained models, at every layer, on real padded text."""

from __future__ import annotations

import pytest
import torch

from erpack import split_model
from erpack.assets import load_dataset
from erpack.models import load_model
from tests.checkers import max_diff_on_tokens

pytestmark = pytest.mark.real


@pytest.mark.parametrize("name", ["minilm", "mpnet"])
def test_real_model_split_equals_full_model_at_every_layer(name):
    loaded = load_model(name)
    texts = [r.text for r in load_dataset("rotten_tomatoes", limit=6)] + [load_dataset("bbc", limit=1)[0].text]
    batch = loaded.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert mask.sum(1).min() < mask.shape[1]  # the batch really is padded
    worst = 0.0
    with torch.no_grad():
        full = loaded.model(input_ids=ids, attention_mask=mask).last_hidden_state
        for k in range(loaded.num_layers + 1):
            lower, upper = split_model(loaded.model, k)
            diff = max_diff_on_tokens(upper(lower(ids, mask), mask), full, mask)
            worst = max(worst, diff)
            assert diff <= 1e-5, f"{name} k={k}: max diff {diff:.2e}"
    print(f"{name}: largest difference over k=0..{loaded.num_layers}: {worst:.2e}")
