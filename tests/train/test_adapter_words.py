"""AdapterSpec.parse and .label: an adapter written as one word (a table cell, a grid's --modes entry)."""

import pytest

from erpack.errors import InputError
from erpack.train import AdapterSpec

WORDS = {
    "adapter": AdapterSpec(),
    "adapter-r64": AdapterSpec(r=64, alpha=128),
    "adapter-ia3": AdapterSpec("ia3"),
    "adapter-r64a32": AdapterSpec(r=64, alpha=32),
    "adapter-ln": AdapterSpec(norms=True),
    "adapter-r8a16-ln": AdapterSpec(r=8, alpha=16, norms=True),
    "adapter-dora": AdapterSpec(dora=True),
    "adapter-r8-dora-ln": AdapterSpec(r=8, norms=True, dora=True),
    "adapter-r16a64-dora": AdapterSpec(alpha=64, dora=True),
    "adapter-ia3-ln": AdapterSpec("ia3", norms=True),
}


@pytest.mark.parametrize("word", sorted(WORDS))
def test_a_word_names_its_adapter_and_the_adapter_its_word(word):
    spec = AdapterSpec.parse(word)
    assert spec == WORDS[word]
    assert AdapterSpec.parse(spec.label()) == spec


def test_label_writes_the_shortest_word():
    assert AdapterSpec(r=16, alpha=32).label() == "adapter"
    assert AdapterSpec(r=8, alpha=16, norms=True).label() == "adapter-r8-ln"
    assert AdapterSpec(r=8, alpha=8, dora=True).label() == "adapter-r8a8-dora"


@pytest.mark.parametrize("bad", ["adapter-r", "adapter-rx", "adapter-r8a", "adapter-ln-r8", "lora", "adapter-r0",
                                 "adapter-ia3-dora", "adapter-ln-dora", "adapter-r8a0"])
def test_a_bad_word_is_refused_with_the_grammar(bad):
    with pytest.raises(InputError, match=r"adapter|rank|alpha|DoRA"):
        AdapterSpec.parse(bad)
