"""erpack: embedding recycling for transformer encoders.

Split a pretrained encoder at layer k (`split_model`), run the lower half once over a corpus into a
compressed, checksummed activation cache, and train and serve task models from layer k.
"""

__version__ = "0.1.0"

from erpack.models.split import split_model  # noqa: E402

__all__ = ["split_model", "__version__"]
