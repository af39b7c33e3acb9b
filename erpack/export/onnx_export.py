"""torch.onnx export of the two halves of a split model, with dynamic batch and token axes.

    export_upper(upper, "m.onnx", hidden_size=384, info=...)   # (hidden_states, attention_mask) -> logits
    export_lower(lower, "l.onnx", info=...)                      # (input_ids, attention_mask[, token_type_ids])
                                                                 #   -> hidden_states (B, T, H)
    export_full(FullStack(model), "f.onnx", info=...)            # (input_ids, attention_mask[, ...]) -> logits

erpack calls torch.onnx directly (not optimum) so the export works on transformers 5. The default
is the TorchScript-based exporter (`dynamo=False`): on these encoders it gives the same parity as
the dynamo exporter (both about 1e-8 on tiny models) in a twentieth of the time, and its graphs are
the ones onnxruntime's transformer optimizer knows how to fuse. `exporter="dynamo"` is there too
(written as one file: external_data=False).

Both functions put the module in eval mode first and leave it there: the TorchScript exporter
restores the training flag it found, and an UpperStack is a fresh nn.Module (training=True), so
without this the shared layers would come back with dropout on.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import nn

from erpack.errors import ExportError
from erpack.export.metadata import write_metadata
from erpack.runtime.lower import wants_token_types
from erpack.tasks import per_token

OPSET = 18
EXPORTERS = ("legacy", "dynamo")


def _example_mask(batch: int, tokens: int) -> torch.Tensor:
    mask = torch.ones((batch, tokens), dtype=torch.long)
    mask[-1, tokens // 2:] = 0  # one padded row, so the mask is a real input of the trace
    return mask


@contextlib.contextmanager
def eager_attention(module: nn.Module):
    """Trace the model with its "eager" attention (explicit MatMul/Softmax), restoring the setting after.

    The SDPA path of transformers 5 traces into a masked-softmax pattern that onnxruntime's optimizer
    does not recognise; the eager one fuses into its Attention kernel. Same computation, same parity.
    """
    view = getattr(module, "view", module)
    config = getattr(view, "config", None)
    old = getattr(config, "_attn_implementation", None)
    if config is None or old in (None, "eager"):
        yield
        return
    try:
        if hasattr(view, "set_attn_implementation"):
            view.set_attn_implementation("eager")
        else:
            config._attn_implementation = "eager"
    except (ValueError, AttributeError, TypeError):  # an architecture without an eager path: export as is
        yield
        return
    try:
        yield
    finally:
        if hasattr(view, "set_attn_implementation"):
            view.set_attn_implementation(old)
        else:
            config._attn_implementation = old


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            axes: dict[str, dict[int, str]], exporter: str, opset: int) -> None:
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; use one of {', '.join(EXPORTERS)}")
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad(), eager_attention(module):
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: parity is checked after export
        if exporter == "legacy":
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
        else:
            shapes = {name: {i: torch.export.Dim.DYNAMIC for i in ax} for name, ax in axes.items()
                      if name in input_names}
            torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                              dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False,
                              verbose=False)
    module.eval()


def _stamp(path: Path, info: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    write_metadata(proto, info)
    onnx.save(proto, str(path))


def export_upper(upper: nn.Module, path, hidden_size: int, info: dict, exporter: str = "legacy",
                 opset: int = OPSET) -> Path:
    """Write `upper` (hidden_states (B, T, H) float32, attention_mask (B, T) int64) as an ONNX graph.

    The output is `logits` (B, C) when the upper stack has a head (a token task's: (B, T, C)), else
    `last_hidden_state` (B, T, H). `info` goes into the graph's metadata (see metadata.py); part, inputs
    and outputs are filled in.
    """
    path = Path(path)
    with torch.no_grad():  # not inference_mode: its tensors break both exporters
        hidden = torch.randn(2, 8, hidden_size, generator=torch.Generator().manual_seed(0))  # (B, T, H)
    mask = _example_mask(2, 8)
    has_head = getattr(upper, "has_head", True)
    out = "logits" if has_head else "last_hidden_state"
    axes = {"hidden_states": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            out: {0: "batch"} if has_head and not per_token(info) else {0: "batch", 1: "tokens"}}
    _export(upper, (hidden, mask), path, ["hidden_states", "attention_mask"], [out], axes, exporter, opset)
    _stamp(path, dict(info, part="upper", exporter=exporter, opset=opset,
                      inputs=["hidden_states", "attention_mask"], outputs=[out]))
    return path


def _token_inputs(module: nn.Module) -> tuple[list[str], tuple]:
    """Input names and example tensors of a graph that takes token ids: (input_ids, attention_mask) and
    token_type_ids when the model uses them; a batch of 2 x 8 with padding in it."""
    ids = torch.randint(3, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = _example_mask(2, 8)
    if wants_token_types(module):
        return ["input_ids", "attention_mask", "token_type_ids"], (ids, mask, torch.zeros_like(ids))
    return ["input_ids", "attention_mask"], (ids, mask)


def export_lower(lower: nn.Module, path, info: dict, exporter: str = "legacy", opset: int = OPSET) -> Path:
    """Write `lower` (input_ids, attention_mask[, token_type_ids], all (B, T) int64) -> hidden_states (B, T, H)."""
    path = Path(path)
    names, args = _token_inputs(lower)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["hidden_states"] = {0: "batch", 1: "tokens"}
    _export(lower, args, path, names, ["hidden_states"], axes, exporter, opset)
    _stamp(path, dict(info, part="lower", exporter=exporter, opset=opset, inputs=names, outputs=["hidden_states"]))
    return path


class FullStack(nn.Module):
    """The whole task model from token ids: (input_ids, attention_mask[, token_type_ids]) -> logits (B, C)
    (a token task's: (B, T, C))."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.view = model  # `view`: what eager_attention and wants_token_types look at

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.view(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits  # (B, C) or (B, T, C)


def export_full(full: FullStack, path, info: dict, exporter: str = "legacy", opset: int = OPSET) -> Path:
    """Write `full` (input_ids, attention_mask[, token_type_ids]) -> logits (B, C), a token task's (B, T, C):
    a model that computes from text, such as the baseline `erpack train --baseline` saves."""
    path = Path(path)
    names, args = _token_inputs(full)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["logits"] = {0: "batch", 1: "tokens"} if per_token(info) else {0: "batch"}
    _export(full, args, path, names, ["logits"], axes, exporter, opset)
    _stamp(path, dict(info, part="full", exporter=exporter, opset=opset, inputs=names, outputs=["logits"]))
    return path
