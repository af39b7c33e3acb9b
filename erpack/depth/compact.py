"""Batch compaction: the layer-by-layer loop PyTorch (erpack.depth.runner) and ONNX Runtime
(erpack.depth.ort) share, torch-free.

After each upper layer the exit rule (erpack.depth.rules) says which documents stop; they leave the
batch (rows, mask and rule state dropped), the padding no remaining document needs is cut, and the
others go on to the next layer. Decisions are per document, so the result of each document does not
depend on the batch it came in.
"""

from __future__ import annotations

import numpy as np

from erpack.depth.rules import Rule


def run_compacted(rule: Rule, layer, hidden, mask, n: int, classes: int, compact: bool = True):
    """The loop PyTorch and ONNX Runtime share: `layer(j, hidden, mask) -> (hidden, exit logits (B, C) numpy,
    halting (B,) numpy or None)` per upper layer; documents that stop leave the batch (with `compact`), and
    the padding no remaining document needs is cut. (logits (B, C), layers (B,)) numpy."""
    batch = hidden.shape[0]
    out = np.zeros((batch, classes), np.float32)
    layers = np.zeros(batch, np.int64)
    done = np.zeros(batch, bool)
    rows = np.arange(batch)  # the original row of each document still running
    state = rule.start(batch, classes)
    for j in range(n):
        hidden, z, h = layer(j, hidden, mask)
        state, stop, o = rule.step(state, z, h, j == n - 1)
        new = stop & ~done[rows]
        out[rows[new]], layers[rows[new]] = o[new], j + 1
        done[rows[new]] = True
        if not compact or j == n - 1:
            continue
        keep = np.nonzero(~stop)[0]
        if not keep.size:
            break
        rows, state = rows[keep], rule.keep(state, keep)
        hidden, mask = hidden[keep], mask[keep]  # a torch tensor takes the numpy index too
        valid = (mask != 0).any(0)
        valid = np.asarray(valid.cpu() if hasattr(valid, "cpu") else valid)
        width = int(np.nonzero(valid)[0].max()) + 1
        hidden, mask = hidden[:, :width], mask[:, :width]
    return out, layers
