"""Train and evaluate task models from a cache of layer-k hidden states (`erpack train`, `erpack eval`).

    from erpack.train import TaskModel, TrainConfig, train_from_cache, evaluate
    summary = train_from_cache(cache, "rotten_tomatoes", mode="adapter", output="models/rt", baseline=True)
    tm = TaskModel.load("models/rt"); tm.check_cache(reader); logits = tm.upper(hidden, mask)

Modules: labels (label sources, splits), data (batch plans, background prefetch), modes (what trains:
upper / adapter / head, PEFT), loop (epochs, early stopping), baseline (full fine-tune from text),
taskmodel (the saved folder), evaluation (metrics and predictions), metrics; token tasks (erpack.words: the
word of each cached token), word_labels (labels per word), word_targets (per-token targets, per-word
scores). See docs/training.md.
"""

from erpack.train.loop import TrainConfig
from erpack.train.modes import ADAPTERS, MODES, AdapterSpec
from erpack.train.taskmodel import TaskModel

__all__ = ["ADAPTERS", "MODES", "AdapterSpec", "TaskModel", "TrainConfig", "evaluate", "train_from_cache"]


def __getattr__(name):
    if name == "train_from_cache":
        from erpack.train.trainer import train_from_cache

        return train_from_cache
    if name == "evaluate":
        from erpack.train.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'erpack.train' has no attribute {name!r}")
