"""Result rows as the training grid writes them, made up for table tests."""


def run(kind, seed, acc, tag="a", mode="full", codec=None, seconds=10.0, validation=0.5, lr=1e-3):
    """A baseline or recycled row of model "m" on "rt" at layer 3 (no test decile: the default split)."""
    return {"kind": kind, "model": "m", "dataset": "rt", "codec": codec, "mode": mode, "seed": seed, "layer": 3,
            "tag": tag, "result": {"test": {"accuracy": acc}, "best_validation": {"accuracy": validation},
                                   "train_seconds_per_epoch": seconds, "lr": lr}}


def on_decile(kind, seed, decile, correct, **kw):
    """A row on test decile `decile` that got the test documents marked '1' in `correct` right."""
    return {**run(kind, seed, correct.count("1") / len(correct), **kw), "test_decile": decile, "test_correct": correct}
