"""What trains in each mode, and the model it trains: the cache's encoder with a classification head.

- `upper`: layers k..L-1, the pooler (if the model has one) and the head train; embeddings and
  layers 0..k-1 (and model-wide tables such as MPNet's relative position bias) stay frozen, so the
  lower stack, and therefore the cache, stay valid.
- `adapter`: every pretrained weight of the encoder is frozen; PEFT injects adapters into the linear
  layers of layers k..L-1 only (exact module names, so no lower layer gets one) and the head trains.
  LoRA: every linear of those layers (attention q/k/v/o, both feed-forward projections), r=16,
  alpha=32; `AdapterSpec(dora=True)` makes it DoRA (the update split into a trained magnitude per
  output and a LoRA-updated direction). (IA)^3: the same linears, with the feed-forward down
  projection scaled on its input.
  `AdapterSpec(norms=True)` also trains the LayerNorms of layers k..L-1 (weight and bias: 2 x 2 x H
  values a layer), which LoRA and (IA)^3 leave frozen.
- `head`: only the head trains, on the frozen model's last hidden state.
- `full` (the baseline): everything trains, from text.

A token task (token-classification) trains AutoModelForTokenClassification the same way: its head is a
linear layer on every token's last hidden state (no pooler). Otherwise the head is the model's own
AutoModelForSequenceClassification head plus whatever pools the
encoder's output for it: BERT's pooler (dense + tanh over [CLS], which transformers keeps inside the
encoder) counts as head, as the dense layer of MPNet's and RoBERTa's classification head does. It
sits after layer L-1, so the cache stays valid; a frozen BERT pooler would bottleneck adapter and
head training (sentence-transformer checkpoints never trained theirs). Every mode and the baseline
share it; it is initialised from the seed before anything else draws random numbers.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from erpack.errors import InputError

MODES = ("upper", "adapter", "head")
ADAPTERS = ("lora", "ia3")
# An adapter in one word (a table cell, a grid's --modes entry): AdapterSpec.parse / AdapterSpec.label
ADAPTER_GRAMMAR = ("adapter (LoRA r=16, alpha 32), adapter-rN (LoRA rank N, alpha 2N), adapter-rNaM (rank N, "
                   "alpha M), adapter-ia3, a LoRA entry with -dora (DoRA), and any adapter with -ln (LayerNorms train)")
_CELL = re.compile(r"adapter(?:-(ia3)|-r(\d+)(?:a(\d+))?)?(-dora)?(-ln)?")


@dataclass(frozen=True)
class AdapterSpec:
    """The adapters `adapter` mode injects; `parse` and `label` write one as a word (`adapter-r8-dora-ln`)."""

    kind: str = "lora"
    r: int = 16
    alpha: int | None = None  # None: 2r (32 at the default rank)
    dropout: float = 0.1
    norms: bool = False  # also train the LayerNorms of layers k..L-1
    dora: bool = False  # LoRA only: weight-decomposed (DoRA, PEFT's use_dora): a trained magnitude per output

    def __post_init__(self):
        if self.kind not in ADAPTERS:
            raise InputError(f"unknown adapter {self.kind!r}; adapters: {', '.join(ADAPTERS)}")
        if self.r < 1:
            raise InputError(f"adapter rank must be >= 1, got {self.r}")
        if self.alpha is None:
            object.__setattr__(self, "alpha", 2 * self.r)
        if self.alpha <= 0:
            raise InputError(f"LoRA alpha must be > 0, got {self.alpha}")
        if self.dora and self.kind != "lora":
            raise InputError(f"DoRA is a form of LoRA; it does not apply to {self.kind}")

    @classmethod
    def parse(cls, text: str) -> AdapterSpec:
        """The adapter a word names: `adapter` (LoRA r=16, alpha 32), `adapter-rN` (rank N, alpha 2N),
        `adapter-rNaM` (rank N, alpha M), `adapter-ia3`; `-dora` after a LoRA word makes it DoRA, a
        final `-ln` also trains the upper layers' LayerNorms (`adapter-r16a32-dora-ln`)."""
        m = _CELL.fullmatch(text)
        if not m:
            raise InputError(f"unknown adapter {text!r}; adapters: {ADAPTER_GRAMMAR}")
        norms, dora = bool(m[5]), bool(m[4])
        if m[1]:
            return cls("ia3", norms=norms, dora=dora)  # ia3 + dora: __post_init__ refuses it
        if m[2]:
            return cls(r=int(m[2]), alpha=int(m[3]) if m[3] else None, norms=norms, dora=dora)
        return cls(norms=norms, dora=dora)

    def label(self) -> str:
        """The word `parse` reads back as this spec (dropout is not part of it)."""
        if self.kind == "ia3":
            word = "adapter-ia3"
        elif self.r == 16 and self.alpha == 32:
            word = "adapter"
        else:
            word = f"adapter-r{self.r}" + ("" if self.alpha == 2 * self.r else f"a{self.alpha}")
        return word + ("-dora" if self.dora else "") + ("-ln" if self.norms else "")

    def as_dict(self) -> dict:
        d = asdict(self) if self.kind == "lora" else {"kind": "ia3", "norms": self.norms}
        for option in ("norms", "dora"):
            if not d.get(option, True):
                del d[option]  # configs written before the option read the same
        return d


@dataclass
class Prepared:
    model: nn.Module  # the transformers model to split and train (adapters injected)
    peft_model: object = None  # the PeftModel in adapter mode, else None
    targets: list[str] = field(default_factory=list)  # adapter target modules

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def finalize(self) -> nn.Module:
        """The plain transformers model to save: adapters merged into the weights."""
        if self.peft_model is None:
            return self.model
        return self.peft_model.merge_and_unload()


def _upper_layers(model: nn.Module, layer: int) -> list[tuple[int, nn.Module]]:
    """(index, module) of the layers the upper stack runs from `layer` on (ALBERT: its shared groups)."""
    from erpack.models.layers import layer_list, upper_layers

    layers = layer_list(model)
    return [(i, layers[i]) for i in upper_layers(model, layer)]


def head_modules(model: nn.Module) -> list[str]:
    """Children of a task model outside its base encoder that hold parameters (the task head)."""
    prefix = model.base_model_prefix
    return [n for n, m in model.named_children() if n != prefix and any(True for _ in m.parameters())]


def upper_linear_names(model: nn.Module, layer: int) -> list[str]:
    """Full module names of the nn.Linear layers in layers k..L-1 (adapter targets)."""
    from erpack.models.layers import layer_list_name

    prefix = layer_list_name(model)
    return [f"{prefix}.{i}.{n}" for i, module in _upper_layers(model, layer)
            for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def _set_head_trainable(model: nn.Module) -> None:
    """The classifier and the encoder's pooler (if any) train: see the module docstring."""
    for name in head_modules(model):
        getattr(model, name).requires_grad_(True)
    pooler = getattr(model.base_model, "pooler", None)
    if pooler is not None:
        pooler.requires_grad_(True)


def prepare(model: nn.Module, mode: str, layer: int, adapter: AdapterSpec | None = None) -> Prepared:
    """Freeze and inject adapters in place for `mode` (one of MODES, or "full")."""
    if mode == "full":
        model.requires_grad_(True)
        return Prepared(model)
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    model.requires_grad_(False)
    if mode == "upper":
        for _, module in _upper_layers(model, layer):
            module.requires_grad_(True)
        _set_head_trainable(model)
        return Prepared(model)
    if mode == "head":
        _set_head_trainable(model)
        return Prepared(model)
    return _with_adapters(model, layer, adapter or AdapterSpec())


def with_peft(model: nn.Module, config):
    """peft.get_peft_model(model, config), without the FutureWarning peft 0.21 triggers on transformers 5.24
    (it reads the deprecated `is_gradient_checkpointing`): a user reads it as a broken install."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _with_adapters(model: nn.Module, layer: int, spec: AdapterSpec) -> Prepared:
    try:
        from peft import IA3Config, LoraConfig
    except ImportError:
        raise InputError("adapter mode needs peft: pip install 'erpack[train]' (or: pip install peft)") from None
    targets = upper_linear_names(model, layer)
    if not targets:
        raise InputError(f"layer {layer} leaves no upper layer to put adapters in; use a smaller --layer or --mode head")
    if spec.kind == "lora":
        config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
                            bias="none", use_dora=spec.dora)
    else:
        down = [t for t in targets if _is_down_projection(model.get_submodule(t))]
        config = IA3Config(target_modules=targets, feedforward_modules=down)
    peft_model = with_peft(model, config)
    inner = peft_model.base_model.model  # the transformers model, adapters injected
    _set_head_trainable(inner)
    if spec.norms:
        for _, module in _upper_layers(inner, layer):
            for m in module.modules():
                if isinstance(m, nn.LayerNorm):
                    m.requires_grad_(True)
    return Prepared(inner, peft_model, targets)


def _is_down_projection(linear: nn.Linear) -> bool:
    """The feed-forward output projection (intermediate -> hidden): (IA)^3 scales its input."""
    return linear.in_features > linear.out_features


def task_model_class(task: str):
    """The transformers Auto class of a task's model: AutoModelForTokenClassification (a head on every
    token's state) for token-classification, else AutoModelForSequenceClassification."""
    import transformers

    return (transformers.AutoModelForTokenClassification if task == "token-classification"
            else transformers.AutoModelForSequenceClassification)


def load_for_cache(meta: dict, labels: list[str], task: str, seed: int, model_override: str | None = None):
    """(LoadedModel of the base encoder, fresh task model: task_model_class(task)) for a cache's meta, its head
    one output per label of `labels` (named in its config's id2label; a regression's one score).

    The encoder is found where the cache recorded it (erpack.models.load_recorded; or at
    `model_override`) and must have the weights the cache was made with (sha256), else
    ManifestMismatchError; a recorded folder that has moved asks for --model FOLDER.
    """
    from erpack.models import load_recorded

    loaded = load_recorded(meta["model"], model_override, "the cache")
    torch.manual_seed(seed)  # the head's initial weights depend on the seed only
    # the names, not only their count: a config class whose default head is another size (openai_privacy_filter's
    # 33 labels) saves no id2label that looks like the default LABEL_0.., and would load the default size back
    kwargs = {"num_labels": 1, "problem_type": "regression"} if task == "regression" else {
        "id2label": dict(enumerate(map(str, labels))), "label2id": {str(n): i for i, n in enumerate(labels)}}
    model = task_model_class(task).from_pretrained(loaded.path, **kwargs)
    return loaded, model
