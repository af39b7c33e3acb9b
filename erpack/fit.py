"""Whether a cache fits what was made for a cache: a task model or an exported graph. One rule, here.

Both record the identity of the cache they were made on (`expected`: erpack_task.json's `cache`, a
graph's metadata `cache`): the encoder (name, model_type, weights_sha256, hidden_size), the layer,
max_length, the tokenizer settings and the codec config. A cache given to them is compared with it:

- refused (ManifestMismatchError, or the `error` class asked for, e.g. GraphCacheMismatchError):
  other encoder weights (sha256), model type or hidden size; another layer; other tokenizer settings
  (when both sides record them): the hidden states would mean something else;
- the codec: refused unless `allow_other_codec` (a decoded record is the same representation up to
  quantization error; a task model allows it, a graph only when asked: `--allow-other-codec`), and
  then a note;
- max_length: a note (only truncation differs).

Every refusal reads `cache PATH does not fit OWNER (made for NAME layer K, codec C): FIELD HAVE
(KIND expects WANT); ... Encode ... (erpack encode ...)`; the notes come back for the summary.
"""

from __future__ import annotations

from erpack.codecs import Pipeline
from erpack.errors import ManifestMismatchError

MODEL_FIELDS = ("weights_sha256", "model_type", "hidden_size")


def _codec_spec(config) -> str | None:
    if config is None:
        return None

    try:
        return Pipeline.from_config(config).spec
    except Exception:  # a codec this erpack does not know: show the config
        return str(config)


def _mismatches(expected: dict, reader, kind: str) -> list[str]:
    """What makes the hidden states of `reader`'s cache mean something else than `expected`'s."""
    meta = reader.meta
    have_model, want_model = meta.get("model") or {}, expected.get("model") or {}
    out = [f"model {key} {str(have_model.get(key))[:16]} ({kind} expects {str(want_model.get(key))[:16]})"
           for key in MODEL_FIELDS if have_model.get(key) != want_model.get(key)]
    if meta.get("layer") != expected.get("layer"):
        out.append(f"layer {meta.get('layer')} ({kind} expects {expected.get('layer')})")
    have_tok, want_tok = meta.get("tokenizer"), expected.get("tokenizer")
    if have_tok and want_tok and have_tok != want_tok:
        out += [f"tokenizer {key} {have_tok.get(key)} ({kind} expects {want_tok.get(key)})"
                for key in sorted(set(have_tok) | set(want_tok)) if have_tok.get(key) != want_tok.get(key)]
    return out


def check_fit(expected: dict, reader, owner: str, kind: str = "task model", allow_other_codec: bool = True,
              error: type[ManifestMismatchError] = ManifestMismatchError, remedy: str = "") -> list[str]:
    """Refuse `reader`'s cache unless it fits `expected` (the cache identity `owner` recorded); return
    notes on the differences allowed (see the module docstring for the rule). `kind` names the owner
    in messages ("task model", "graph"); `remedy` is appended to the refusal's advice."""
    problems = _mismatches(expected, reader, kind)
    identity_differs = bool(problems)
    notes = []
    want_codec = expected.get("codec")
    if want_codec is not None and reader.manifest["codec"] != want_codec:
        want_spec = expected.get("codec_spec") or _codec_spec(want_codec)
        if allow_other_codec:
            notes.append(f"codec {reader.codec.spec} differs from the {kind}'s ({want_spec}); decoded values are "
                         "the same representation up to quantization error")
        else:
            problems.append(f"codec {reader.codec.spec} ({kind} expects {want_spec})")
    if problems:
        if not identity_differs:  # only the codec: it can be accepted
            remedy += " (or pass --allow-other-codec to accept the codec difference)"
        raise error(_refusal(expected, reader, owner, problems, remedy))
    if expected.get("max_length") and reader.meta.get("max_length") != expected["max_length"]:
        notes.append(f"max_length {reader.meta.get('max_length')} differs from the {kind}'s cache "
                     f"({expected['max_length']}): only truncation differs")
    return notes


def _refusal(expected: dict, reader, owner: str, problems: list[str], remedy: str) -> str:
    name, layer = (expected.get("model") or {}).get("name"), expected.get("layer")
    spec = expected.get("codec_spec") or _codec_spec(expected.get("codec"))
    codec = f" --codec {spec}" if spec else ""
    return (f"cache {reader.location} does not fit {owner} (made for {name} layer {layer}"
            + (f", codec {spec}" if spec else "") + "): " + "; ".join(problems)
            + f". Encode the corpus for it (erpack encode CORPUS -o CACHE --model {name} --layer {layer}{codec})"
            + remedy)
