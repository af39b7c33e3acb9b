"""Pipeline: one array codec, then byte codecs; encodes a (T, H) float32 record to one blob.

    pipe = Pipeline.from_spec("int8c+zstd:3")
    blob = pipe.encode(x)                  # x float32 (T, H)
    y = pipe.decode(blob, shape=(T, H))    # float32 (T, H)

Decoding derives from the shape the largest size every stage can produce and hands each byte stage
that bound, so a garbled or hostile blob can never make a stage allocate more than the record needs.

A pipeline whose array codec is fitted (`pipe.fitted`) codes only once fitted:

    pipe = Pipeline.from_spec("tc:snr=19").fit(sample, context={...}, seed=0)   # sample: [(x, ids), ...]
    pipe.state                                                                 # its FittedState
    again = Pipeline.from_config(pipe.get_config(), state=pipe.state)          # what a reader does

and one whose array codec reads token ids (`pipe.needs_tokens`) takes them in encode and decode.
"""

from __future__ import annotations

import numpy as np

from erpack.codecs.base import HEADER, ArrayCodec, ByteCodec, Codec, as_bytes_view, check_shape
from erpack.codecs.registry import check_config, codec_from_config, list_codecs
from erpack.codecs.spec import format_stage, parse_spec
from erpack.errors import CodecError


class Pipeline:
    codec_id = "pipeline"

    def __init__(self, stages: list[Codec]):
        stages = list(stages)
        if not stages or not isinstance(stages[0], ArrayCodec):
            first = stages[0].codec_id if stages else "nothing"
            arrays = ", ".join(c["id"] for c in list_codecs() if c["kind"] == "array")
            raise CodecError(f"a pipeline starts with one array codec ({arrays}), not {first}; e.g. int8c+zstd:3")
        for stage in stages[1:]:
            if not isinstance(stage, ByteCodec):
                raise CodecError(f"{stage.codec_id!r} is an array codec: a pipeline holds exactly one, as its first stage")
        self.stages = stages
        self._sizes: dict[tuple[int, int], list[int]] = {}  # shape -> bounds, for the shapes seen last

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str) -> Pipeline:
        return cls(parse_spec(spec))

    @classmethod
    def from_config(cls, config: dict, state=None) -> Pipeline:
        """The pipeline a config describes; `state` is the fitted state of its array codec, which a
        fitted codec needs before it codes (a reader passes what the cache holds)."""
        if not isinstance(config, dict) or config.get("id") != "pipeline" or not isinstance(config.get("stages"), list):
            raise CodecError(f'a pipeline config is {{"id": "pipeline", "stages": [...]}}, got {config!r}')
        pipe = cls([get_codec(stage) for stage in config["stages"]])
        return pipe.with_state(state) if state is not None else pipe

    # ---- fitting --------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """True when the array codec learns from data (it needs `fit` or `with_state` to code)."""
        return self.stages[0].fitted

    @property
    def needs_tokens(self) -> bool:
        return self.stages[0].needs_tokens

    @property
    def state(self):
        """The array codec's FittedState, None for codecs that fit nothing (or before fitting)."""
        return self.stages[0].state

    def fit(self, records, *, context: dict | None = None, seed: int = 0) -> Pipeline:
        """This pipeline with its array codec fitted on `records` [(x (T, H) float32, ids (T,) or None)]."""
        return Pipeline([self.stages[0].fit(records, context=context, seed=seed), *self.stages[1:]])

    def with_state(self, state) -> Pipeline:
        if state is not None and not self.fitted:
            raise CodecError(f"{self.spec} fits nothing, but a fitted state ({state.codec}) was given")
        return Pipeline([self.stages[0].with_state(state), *self.stages[1:]])

    def get_config(self) -> dict:
        return {"id": "pipeline", "stages": [stage.get_config() for stage in self.stages]}

    @property
    def spec(self) -> str:
        return "+".join(format_stage(stage) for stage in self.stages)

    @property
    def lossless(self) -> bool:
        return all(stage.lossless for stage in self.stages)

    @property
    def array_codec(self) -> ArrayCodec:
        return self.stages[0]

    def __eq__(self, other) -> bool:
        return isinstance(other, Pipeline) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Pipeline({self.spec!r})"

    # ---- coding -----------------------------------------------------------------------------------
    def bounds(self, shape) -> list[int]:
        """Largest byte length after each stage for a record of this shape."""
        T, H = check_shape(shape)
        return self._bounds(T, H)

    def _bounds(self, T: int, H: int) -> list[int]:
        sizes = self._sizes.get((T, H))
        if sizes is None:
            sizes = [HEADER.size + self.stages[0].body_size(T, H)]
            for stage in self.stages[1:]:
                sizes.append(stage.max_encoded_size(sizes[-1]))
            if len(self._sizes) > 4096:
                self._sizes.clear()
            self._sizes[T, H] = sizes
        return sizes

    def encode(self, x: np.ndarray, tokens=None) -> bytes:
        data = self.stages[0].encode(x, tokens)
        for stage in self.stages[1:]:
            data = stage.encode(data)
        return bytes(data)

    def decode(self, buf, shape, out: np.ndarray | None = None, tokens=None) -> np.ndarray:
        T, H = check_shape(shape)
        return self.stages[0].decode_checked(self._unwrap(buf, T, H), T, H, out, self._bounds(T, H)[0], tokens=tokens)

    def unwrap(self, buf, T: int, H: int) -> memoryview:
        """The array codec's blob inside `buf`: every byte stage undone (decompression), each bounded
        by what a (T, H) record can produce."""
        T, H = check_shape((T, H))
        return self._unwrap(buf, T, H)

    def _unwrap(self, buf, T: int, H: int) -> memoryview:
        """unwrap for a shape check_shape has passed (decode's hot path checks it once)."""
        sizes = self._bounds(T, H)
        data = as_bytes_view(buf)
        if len(data) > sizes[-1]:
            raise CodecError(
                f"{len(data)} bytes is more than {self.spec} can produce for shape {(T, H)} "
                f"(at most {sizes[-1]}); the blob belongs to another record or codec"
            )
        for i in range(len(self.stages) - 1, 0, -1):
            data = as_bytes_view(self.stages[i].decode(data, max_size=sizes[i - 1]))
        return data

    def decode_batch(self, blobs, shapes, out: np.ndarray | None = None, tokens=None) -> np.ndarray:
        """Many records at once into one zero-padded float32 (B, T, H) batch, T the longest record:
        record r fills out[r, :T_r]. What a reader's consumer wants (a padded batch), and faster than
        record by record: dequantization runs once over the batch where the array codec allows.
        `tokens[r]`: record r's token ids, for a codec that needs them."""
        shapes = [check_shape(s) for s in shapes]
        if len(shapes) != len(blobs) or not shapes:
            raise CodecError(f"decode_batch needs one shape per blob and at least one blob ({len(blobs)} blobs, {len(shapes)} shapes)")
        H = shapes[0][1]
        if any(h != H for _, h in shapes):
            raise CodecError(f"decode_batch: records of one batch share the hidden size; got {sorted({h for _, h in shapes})}")
        lengths = [t for t, _ in shapes]
        views = [self._unwrap(b, t, H) for b, t in zip(blobs, lengths)]
        exact = self.stages[0].exact_size
        for r, (view, t) in enumerate(zip(views, lengths)):  # the batch is allocated from checked sizes only
            if (len(view) != self._bounds(t, H)[0]) if exact else not (HEADER.size <= len(view) <= self._bounds(t, H)[0]):
                raise CodecError(f"decode_batch: record {r} holds {len(view)} bytes, but a ({t}, {H}) record "
                                 f"of {self.spec} takes {self._bounds(t, H)[0]}; it belongs to another shape or codec")
        if tokens is not None and len(tokens) != len(blobs):
            raise CodecError(f"decode_batch: {len(tokens)} token id arrays for {len(blobs)} blobs")
        return self.dequantize_batch(views, lengths, H, out, tokens)

    def dequantize_batch(self, views, lengths: list[int], H: int, out: np.ndarray | None = None, tokens=None) -> np.ndarray:
        """The array stage of decode_batch, on blobs `unwrap` returned (timed apart by the benchmark)."""
        shape = (len(lengths), max(lengths), H)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise CodecError(f"out must be a C-contiguous float32 array of shape {shape}, got {got}")
        self.stages[0].require_state()
        self.stages[0].decode_batch(views, lengths, out, tokens)  # writes every element: padding rows as zeros
        return out


def get_codec(config: dict) -> Codec | Pipeline:
    """A codec, or a whole pipeline (id "pipeline"), from its config dict."""
    check_config(config)
    if config["id"] == "pipeline":
        return Pipeline.from_config(config)
    return codec_from_config(config)
