"""What an exported graph records about itself, and the check that it fits a cache (erpack.fit's rule).

Every graph erpack writes carries an ONNX metadata property `erpack` holding one JSON document:

    {"format": "erpack-onnx", "version": 1, "part": "upper" | "lower" | "full", "variant": "fp32" | ...,
     "inputs": [...], "outputs": [...],
     "cache": {"model": {name, model_type, weights_sha256, num_layers, hidden_size},
               "layer": k, "max_length": N, "tokenizer": {...}, "codec": {codec config}, "codec_spec": "..."},
     "task": ..., "labels": [...], "subwords": "first" | "all" (token-classification only), "parity": {...}}

A token-classification graph outputs logits per token, (B, T, C); `per_token(info)` says which kind a
graph is, and its `subwords` rule says how its token logits become one prediction per word
(erpack.words.word_predictions).

and, for tools that only list flat properties (Netron, `onnx` viewers), `erpack.weights_sha256`,
`erpack.layer`, `erpack.codec`, `erpack.max_length`, `erpack.part`. The JSON document is the one
erpack reads back.
"""

from __future__ import annotations

import json
from pathlib import Path

from erpack.errors import ExportError, GraphCacheMismatchError
from erpack.fit import check_fit

META_KEY = "erpack"
META_FORMAT = "erpack-onnx"
META_VERSION = 1


def write_metadata(model_proto, info: dict) -> None:
    """Set the `erpack` property (and the flat ones) on an onnx.ModelProto, replacing old values."""
    info = dict(info, format=META_FORMAT, version=META_VERSION)
    cache = info.get("cache") or {}
    props = {
        META_KEY: json.dumps(info, sort_keys=True),
        "erpack.part": str(info.get("part")),
        "erpack.weights_sha256": str((cache.get("model") or {}).get("weights_sha256")),
        "erpack.layer": str(cache.get("layer")),
        "erpack.codec": str(cache.get("codec_spec") or json.dumps(cache.get("codec"), sort_keys=True)),
        "erpack.max_length": str(cache.get("max_length")),
    }
    kept = [p for p in model_proto.metadata_props if p.key not in props]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def set_file_metadata(path, updates: dict) -> dict:
    """Merge `updates` into the `erpack` property of the graph file at `path` (rewritten in place)."""
    import onnx

    proto = onnx.load(str(path))
    info = _from_props({p.key: p.value for p in proto.metadata_props}, path)
    info.update(updates)
    write_metadata(proto, info)
    onnx.save(proto, str(path))
    return info


def _from_props(props: dict, where) -> dict:
    raw = props.get(META_KEY)
    if raw is None:
        raise ExportError(f"{where} carries no `{META_KEY}` metadata: it was not exported by erpack. "
                          "Export it with `erpack export TASK_MODEL -o FILE.onnx`")
    try:
        info = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{where}: the `{META_KEY}` metadata is not valid JSON ({exc.msg}); export it again") from None
    if info.get("format") != META_FORMAT or int(info.get("version", 0)) > META_VERSION:
        raise ExportError(f"{where}: metadata format {info.get('format')!r} version {info.get('version')!r} is not one "
                          f"this erpack reads ({META_FORMAT} <= {META_VERSION}); upgrade erpack or export again")
    return info


def read_metadata(source) -> dict:
    """The `erpack` document of a graph: a file path, an onnx.ModelProto or an InferenceSession."""
    if hasattr(source, "get_modelmeta"):  # onnxruntime.InferenceSession: no second parse of the file
        return _from_props(dict(source.get_modelmeta().custom_metadata_map), "the session's graph")
    if hasattr(source, "metadata_props"):
        return _from_props({p.key: p.value for p in source.metadata_props}, "the graph")
    import onnx

    path = Path(source)
    if not path.is_file():
        raise ExportError(f"graph file {path} does not exist")
    proto = onnx.load(str(path), load_external_data=False)
    return _from_props({p.key: p.value for p in proto.metadata_props}, path)


def check_cache(info: dict, reader, graph_name="the graph", allow_other_codec: bool = False) -> list[str]:
    """Refuse a cache that the graph was not made for (GraphCacheMismatchError); return notes on allowed
    differences. The rule is erpack.fit.check_fit's, over the cache identity in the graph's metadata;
    another codec is refused unless `allow_other_codec`."""
    return check_fit(info.get("cache") or {}, reader, graph_name, kind="graph", allow_other_codec=allow_other_codec,
                     error=GraphCacheMismatchError, remedy=", or export the task model again for this cache")
