"""The shared block distilled from the real MiniLM's upper stack (k = 3) on real reviews: train, eval at S steps."""

from __future__ import annotations

import json

import pytest

from erpack.cli import main
from tests.checkers import minilm_reviews_cache

pytestmark = pytest.mark.real


@pytest.mark.parametrize("random", [[], ["--random-steps", "--random-distill"]], ids=["fixed", "random"])
def test_minilm_shared_block_on_reviews(tmp_path, capsys, random):
    corpus, cache = minilm_reviews_cache(tmp_path, {"train": 48, "validation": 16, "test": 16}, codec="fp16")
    out = tmp_path / "tm"
    assert main(["train", str(cache), "--labels", str(corpus), "--shared-block", "--distill-epochs", "1",
                 "--epochs", "1", "--batch-size", "16", "-o", str(out), "--device", "cpu", *random]) == 0
    record = json.loads((out / "erpack_task.json").read_text())["ode"]
    assert record["steps_trained"] == 3 and record["block"]["distill"][0]["final_mse"] > 0
    if random:  # 48 documents in batches of 16: 3 draws in distillation, 3 in fine-tuning, each of 1..3
        assert sum(record["random_steps"]["draws"].values()) == 3
        assert sum(record["block"]["distill_random_steps"]["draws"].values()) == 3
    capsys.readouterr()
    for steps in (1, 3):
        assert main(["eval", str(out), str(cache), "--labels", str(corpus), "--steps", str(steps), "--json",
                     "--device", "cpu"]) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r["documents"] == 16 and r["mean_layers"] == steps and 0 <= r["metrics"]["accuracy"] <= 1
