"""What `export_task_model` returns: the graph it wrote, its parity check, and each variant beside it.

`ExportSummary.as_dict()` is `erpack export --json`. A `Variant`'s `details` (what the optimizer fused,
how the quantizer ran) stand at the top level of its dict, beside its name, path and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Variant:
    """One derived graph (optimized, int8-dynamic, int8-static): where it is, how it was made, how it compares."""

    variant: str
    path: str
    bytes: int
    parity: dict | None = None  # optimized: its own check against PyTorch (ParityReport.as_dict)
    details: dict = field(default_factory=dict)  # the optimizer's report, or the quantizer's settings
    agreement: dict | None = None  # with the fp32 graph (erpack.export.parity.graph_agreement); upper stack only
    timing: dict | None = None  # batch latency against the fp32 graph (interleaved medians)
    size_ratio: float | None = None  # fp32 bytes / these bytes

    def as_dict(self) -> dict:
        d = {"variant": self.variant, "path": self.path, "bytes": self.bytes}
        if self.parity is not None:
            d["parity"] = self.parity
        d.update(self.details)
        for key in ("agreement", "timing", "size_ratio"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


@dataclass
class ExportSummary:
    """The fp32 graph at `output` (the `part` of the task model), its parity with PyTorch, its variants, notes."""

    output: str
    part: str  # upper, lower or full
    layer: int
    model: str | None  # the encoder's recorded name
    task: str
    exporter: str
    notes: list[str] = field(default_factory=list)  # cache differences, agreement warnings
    variants: list[Variant] = field(default_factory=list)
    parity: dict | None = None  # ParityReport.as_dict of the fp32 graph
    bytes: int | None = None  # of the fp32 graph

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.variant == name), None)

    def as_dict(self) -> dict:
        return {"output": self.output, "part": self.part, "layer": self.layer, "model": self.model, "task": self.task,
                "exporter": self.exporter, "notes": self.notes, "variants": [v.as_dict() for v in self.variants],
                "parity": self.parity, "bytes": self.bytes}
