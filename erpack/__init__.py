"""erpack: embedding recycling for transformer encoders.

Split a pretrained encoder at layer k (`split_model`), run the lower half once over a corpus into a
compressed, checksummed activation cache, and train and serve task models from layer k.
"""

__version__ = "0.1.0"

__all__ = ["split_model", "__version__"]


def __getattr__(name):
    # torch and transformers load only when the split is asked for: codecs and the store stay light.
    if name == "split_model":
        from erpack.models.split import split_model

        return split_model
    raise AttributeError(f"module 'erpack' has no attribute {name!r}")
