"""Two caches of the same corpus compared record by record: the same ids, each once, and the largest
difference of decoded records, in absolute terms and in quantization steps (int8c codecs), so a
distributed encode can be checked against a single-process one (and a resumed run against a whole one).

    report = compare_caches("caches/single", "caches/ray")   # local folders
    report.as_dict() -> {"documents", "max_abs_diff", "max_diff_in_steps", "missing", "extra", "listed_twice"}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from erpack.codecs import Pipeline, steps
from erpack.codecs.base import HEADER
from erpack.store import CacheReader


@dataclass
class Parity:
    documents: int = 0
    max_abs_diff: float = 0.0
    max_diff_in_steps: float | None = None  # None: the codec has no step (not int8c)
    missing: list[str] = field(default_factory=list)  # in the reference, not in the other
    extra: list[str] = field(default_factory=list)  # in the other, not in the reference
    listed_twice: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)

    @property
    def same_ids(self) -> bool:
        return not (self.missing or self.extra or self.listed_twice)

    def within_step(self, steps_allowed: float = 1.0) -> bool:
        """Same ids and every record within `steps_allowed` quantization steps (exactly equal for codecs
        without a step)."""
        if not self.same_ids or self.shape_mismatches:
            return False
        if self.max_diff_in_steps is None:
            return self.max_abs_diff == 0.0
        return self.max_diff_in_steps <= steps_allowed

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("missing", "extra", "listed_twice", "shape_mismatches"):
            d[key] = d[key][:20]
        d["same_ids"] = self.same_ids
        return d


def record_step(pipeline: Pipeline, blob, shape) -> float | None:
    """The largest quantization step of an int8c record (one per block and channel); None for others."""
    codec = pipeline.array_codec
    if codec.codec_id != "int8c":
        return None
    T, H = shape
    body = bytes(pipeline.unwrap(blob, T, H))[HEADER.size:]
    _, nb = steps.n_blocks(T, codec.block)
    return float(steps.read_steps(body, np.frombuffer(body, dtype=np.uint8), nb, H, codec.codec_id).max())


def compare_caches(reference, other) -> Parity:
    """Compare every record of `other` with `reference` (caches at paths or URLs, same codec)."""
    ra, rb = CacheReader(reference), CacheReader(other)
    ids_a, ids_b = ra.ids(), rb.ids()
    seen, twice = set(), []
    for doc_id in ids_b:
        (twice.append if doc_id in seen else seen.add)(doc_id)
    out = Parity(listed_twice=twice, missing=sorted(set(ids_a) - seen), extra=sorted(seen - set(ids_a)))
    pipeline = Pipeline.from_config(ra.manifest["codec"])
    for doc_id in sorted(set(ids_a) & seen):
        x, y = ra.get(doc_id), rb.get(doc_id)
        out.documents += 1
        if x.shape != y.shape:
            out.shape_mismatches.append(doc_id)
            continue
        diff = float(np.abs(x - y).max())
        out.max_abs_diff = max(out.max_abs_diff, diff)
        step_a = record_step(pipeline, *ra.get_encoded(doc_id))
        if step_a is not None:
            step = max(step_a, record_step(pipeline, *rb.get_encoded(doc_id)))
            out.max_diff_in_steps = max(out.max_diff_in_steps or 0.0, diff / step)
    return out
