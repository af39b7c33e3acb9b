"""`--train-limit N`: a seeded sample of the training split by a hash of the ids, not its first N documents
(BBC is stored class by class), kept in the corpus order; on real BBC labels and through prepare_data."""

import pytest

from erpack.errors import InputError
from erpack.store import CacheReader
from erpack.train.labels import read_labels, train_subset
from erpack.train.trainer import prepare_data


@pytest.fixture(scope="module")
def bbc_train():
    return [e for e in read_labels("bbc") if e.split == "train"]


def test_bbc_limit_has_several_classes(bbc_train):
    assert len({e.label for e in bbc_train[:50]}) == 1  # why: the corpus is sorted by label
    chosen = train_subset(bbc_train, 50, seed=0)
    assert len(chosen) == 50
    classes = {e.label for e in chosen}
    assert len(classes) >= 4, classes  # BBC has 5


def test_subset_is_seeded_ordered_and_order_free(bbc_train):
    a = train_subset(bbc_train, 50, seed=0)
    assert [e.id for e in a] == [e.id for e in train_subset(bbc_train, 50, seed=0)]
    position = {e.id: i for i, e in enumerate(bbc_train)}
    assert [position[e.id] for e in a] == sorted(position[e.id] for e in a)  # the corpus order
    shuffled = train_subset(list(reversed(bbc_train)), 50, seed=0)
    assert {e.id for e in shuffled} == {e.id for e in a}  # the same documents, whatever the order
    assert {e.id for e in train_subset(bbc_train, 50, seed=1)} != {e.id for e in a}
    assert train_subset(bbc_train, None) == bbc_train
    assert train_subset(bbc_train, len(bbc_train) + 5) == bbc_train
    for bad in (0, -3):
        with pytest.raises(InputError, match="--train-limit"):
            train_subset(bbc_train, bad)


def test_prepare_data_takes_the_seeded_subset(tiny):
    with CacheReader(tiny["cache"]) as reader:
        full = prepare_data(reader, str(tiny["labels"]))
        data = prepare_data(reader, str(tiny["labels"]), train_limit=10, seed=3)
    assert [e.id for e in data.splits["train"]] == [e.id for e in train_subset(full.splits["train"], 10, seed=3)]
    assert data.splits["validation"] == full.splits["validation"]
    assert len(data.y["train"]) == len(data.lengths["train"]) == 10
