"""Every encoder of the installed transformers, built tiny and split at every k.

An encoder here is a `model_type` of transformers' `AutoModel` mapping that has a masked-LM model, or
a sequence or token classification model and no generating one (causal LM, sequence to sequence,
image/text to text); encoder-decoders are left out. Each is built from a tiny random config (4
layers, hidden 32, the overrides below where an architecture needs them) and sorted into:

- `supported`: `split_model` cuts it and upper(lower(x)) equals the model within TOL at every k;
- `refused`: `split_model` refuses it (`UnsupportedModelError`), with its reason;
- `not built`: no tiny config of it can be instantiated or run here (the reason is the error);
- `failed`: the split runs but differs from the model, or raises something else: a bug, or an
  architecture missing from erpack/models/layers.py (the sweep test fails on these).

tests/models/test_sweep.py runs it; tools/models_doc.py writes docs/models.md from it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import torch

TOL = 1e-5
LENGTHS = [9, 3, 14, 1, 6]  # varied lengths: every batch is padded
VOCAB = 120
TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB,
            max_position_embeddings=64)

# Per model_type: what its tiny config needs beyond TINY (sizes that must agree, windows smaller than
# the test batch so local attention differs from global, token ids inside the tiny vocabulary).
OVERRIDES: dict[str, dict] = {
    "albert": dict(embedding_size=16, num_hidden_groups=2, inner_group_num=1),
    "big_bird": dict(attention_type="original_full"),
    "canine": dict(downsampling_rate=2, local_transformer_stride=4),
    "deberta": dict(relative_attention=True, max_relative_positions=16, pos_att_type=["c2p", "p2c"]),
    "deberta-v2": dict(relative_attention=True, position_buckets=8, max_relative_positions=32,
                       pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", conv_kernel_size=3, conv_act="gelu",
                       share_att_key=True),
    "distilbert": dict(dim=32, n_layers=4, n_heads=4, hidden_dim=64),
    "electra": dict(embedding_size=16),
    "esm": dict(pad_token_id=1, mask_token_id=2, position_embedding_type="rotary", emb_layer_norm_before=False),
    "funnel": dict(num_hidden_layers=None, architectures=["FunnelModel"], block_sizes=[2, 2], block_repeats=[1, 1], d_model=32, n_head=4, d_head=8, d_inner=64),
    "longformer": dict(attention_window=4),
    "luke": dict(entity_vocab_size=10, entity_emb_size=16),
    "roc_bert": dict(pronunciation_vocab_size=20, shape_vocab_size=20, pronunciation_embed_dim=8, shape_embed_dim=8),
    "modernbert": dict(global_attn_every_n_layers=2, local_attention=4),
    "mpnet": dict(relative_attention_num_buckets=32),
    "reformer": dict(axial_pos_shape=[8, 8], axial_pos_embds_dim=[16, 16], attn_layers=["local", "lsh"] * 2,
                     local_attn_chunk_length=4, lsh_attn_chunk_length=4, max_position_embeddings=64),
    "squeezebert": dict(embedding_size=32),
}
for _roberta in ("roberta", "xlm-roberta", "camembert", "data2vec-text", "roberta-prelayernorm", "xlm-roberta-xl",
                 "ibert", "xmod", "luke"):
    OVERRIDES.setdefault(_roberta, {})["pad_token_id"] = 1

# Encoders of the mapping that are no text encoder erpack can feed (token ids and a mask), and why: the
# sweep does not build them.
NOT_TEXT: dict[str, str] = {
    "bros": "a document-layout model: needs a bounding box per token (bbox)",
    "layoutlmv2": "a document-layout model: needs bounding boxes and the page image",
    "layoutlmv3": "a document-layout model: needs bounding boxes and the page image",
    "lilt": "a document-layout model: needs a bounding box per token (bbox)",
    "perceiver": "takes preprocessed inputs of any modality, not token ids",
    "xmod": "needs the language of each input (lang_ids) to pick its adapters",
    "wav2vec2": "a speech model",
    "qdqbert": "needs the pytorch-quantization library",
    "fnet": "mixes every position with a Fourier transform and takes no attention mask (transformers 4.57), "
            "so a document's hidden states depend on the padding of the batch it ran in",
}

# Architectures the split supports that do not yet run the whole pipeline (encode, train a document
# classifier, export to ONNX, predict), and why: tests/models/test_end_to_end.py expects each to fail
# (strictly: a fixed one must leave this table), and docs/models.md lists them.
END_TO_END_GAPS: dict[str, str] = {
    "deberta": "export (transformers 5): the ONNX graph of DeBERTa's relative attention fails in onnxruntime "
               "on other shapes than the traced one (GatherElements)",
    "longformer": "train: LongformerForSequenceClassification builds its global attention mask from input_ids, "
                  "so its head cannot run from hidden states",
    "mega": "export: its moving-average layer uses an FFT (aten::fft_rfft), which the ONNX exporter does not "
            "support (MEGA is in transformers 4.57 only)",
    "openai_privacy_filter": "train: transformers has no sequence-classification model for it (token "
                             "classification only; a token task model of it trains and loads, but its ONNX graph "
                             "fails in onnxruntime at the mixture-of-experts Split on other shapes than the traced "
                             "one)",
    "tapas": "train: its token_type_ids hold 7 table coordinates per token, from its own table tokenizer",
}

_GAPS_FROM_5 = {"deberta"}  # gaps that transformers 4.57 does not have


def end_to_end_gap(model_type: str) -> str | None:
    """Why `model_type` does not run the whole pipeline on the installed transformers, or None."""
    import transformers

    if model_type in _GAPS_FROM_5 and int(transformers.__version__.split(".")[0]) < 5:
        return None
    return END_TO_END_GAPS.get(model_type)


_GENERATING = re.compile(r"CAUSAL_LM|SEQ_TO_SEQ|TO_TEXT|MULTIMODAL_LM|VISION_2_SEQ")


def encoder_types() -> list[str]:
    """The encoder-only model types of the installed transformers (see the module docstring)."""
    from transformers.models.auto import modeling_auto as auto

    mappings = {n: getattr(auto, n) for n in dir(auto) if n.endswith("_MAPPING_NAMES")}
    generating = set().union(*(m for n, m in mappings.items() if _GENERATING.search(n)))
    seq2seq = set().union(*(m for n, m in mappings.items() if "SEQ_TO_SEQ" in n))
    masked = set(auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    classify = set(auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES) | set(
        auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES)
    base = set(auto.MODEL_MAPPING_NAMES)
    return sorted(t for t in base if t not in seq2seq and (t in masked or (t in classify and t not in generating)))


def tiny_config(model_type: str, **extra):
    from transformers import AutoConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = dict(TINY, **OVERRIDES.get(model_type, {}), **extra)
        config = AutoConfig.for_model(model_type, **{k: v for k, v in settings.items() if v is not None})
    for name, value in list(vars(config).items()):  # special token ids from the real vocabulary
        if name.endswith("_token_id") and isinstance(value, int) and value >= VOCAB:
            setattr(config, name, 0 if name == "pad_token_id" else 2)
    return config


def tiny_model(model_type: str, num_labels: int | None = None, seed: int = 0):
    """A randomly initialised tiny model of `model_type` in eval mode (base, or with a classification head)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_config(model_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if num_labels is None:
            return AutoModel.from_config(config).eval()
        config.num_labels = num_labels
        return AutoModelForSequenceClassification.from_config(config).eval()


def padded_batch(lengths: list[int] = LENGTHS, seed: int = 0, pad_id: int = 0):
    """Random token ids right-padded to the longest length, with the matching attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, VOCAB, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


@dataclass
class Result:
    model_type: str
    status: str  # supported, refused, not built, failed
    reason: str = ""
    layers: int = 0
    diffs: list[float] = field(default_factory=list)  # max |upper(lower(x)) - model(x)| per k
    layer_path: str = ""
    model_class: str = ""

    @property
    def max_diff(self) -> float | None:
        return max(self.diffs) if self.diffs else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]


def sweep_one(model_type: str) -> Result:
    """Build `model_type` tiny and check the split at every k."""
    from erpack import split_model
    from erpack.errors import UnsupportedModelError
    from erpack.models.layers import layer_list_name
    from erpack.models.split import depth

    try:
        config = tiny_config(model_type)
    except Exception as exc:  # noqa: BLE001 - the reason is the report
        return Result(model_type, "not built", f"no tiny config: {_one_line(exc)}")
    modalities = sorted(n for n in getattr(config, "sub_configs", None) or {} if n.split("_")[0] in
                        ("text", "vision", "audio", "speech"))
    if modalities:
        return Result(model_type, "not built", f"a multimodal model (its config holds {', '.join(modalities)}): "
                      "not a text encoder")
    if model_type in NOT_TEXT:
        return Result(model_type, "not built", NOT_TEXT[model_type])
    try:
        model = tiny_model(model_type)
        ids, mask = padded_batch()
        with torch.no_grad():
            full = model(input_ids=ids, attention_mask=mask).last_hidden_state
    except Exception as exc:  # noqa: BLE001
        return Result(model_type, "not built", f"the tiny model does not run on token ids and a mask "
                      f"({_one_line(exc)})")
    result = Result(model_type, "failed", model_class=type(model).__name__)
    try:
        result.layers = depth(model)
        result.layer_path = layer_list_name(model)
        with torch.no_grad():
            for k in range(result.layers + 1):
                lower, upper = split_model(model, k)
                out = upper(lower(ids, mask), mask)
                keep = mask.bool()
                result.diffs.append((out[keep] - full[keep]).abs().max().item())
    except UnsupportedModelError as exc:
        reason = str(exc).removeprefix(f"model_type {model_type!r} is not supported: ")
        return Result(model_type, "refused", reason, model_class=type(model).__name__)
    except Exception as exc:  # noqa: BLE001
        result.reason = f"the split raised {_one_line(exc)} at k={len(result.diffs)}"
        return result
    if result.max_diff > TOL:
        result.reason = f"upper(lower(x)) differs from the model by {result.max_diff:.1e} (k: {result.diffs})"
        return result
    result.status = "supported"
    return result


_RESULTS: dict[str, Result] = {}


def sweep_all() -> list[Result]:
    """`sweep_one` of every encoder type, once per process (the test and the page share it)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in encoder_types():
            if t not in _RESULTS:
                _RESULTS[t] = sweep_one(t)
    return [_RESULTS[t] for t in encoder_types()]
