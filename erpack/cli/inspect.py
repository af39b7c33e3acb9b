"""`erpack inspect`: what a cache holds (model, layer, codec, documents, tokens) and what it costs."""

from __future__ import annotations

import json
from pathlib import Path

from erpack.cli.storage import add_storage_options, cache_where
from erpack.store import CacheReader, CacheStats
from erpack.store.location import is_remote


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="show what a cache holds and what it costs on disk, per token and per value",
        description=(
            "Read a cache's manifest and shard indexes (not its records) and print: the model, layer, "
            "tokenizer settings and codec it was written with; how many documents and tokens it holds; "
            "its size on disk, per token and per document; bits per stored value (everything on disk, a "
            "fitted codec's state included; without that state; and the codec's payload alone) and the "
            "ratio to fp32/fp16; the bytes of the records' token ids; and its shards. Fast on any size of "
            "cache. To check every byte, run `erpack verify CACHE`."
        ),
    )
    p.add_argument("cache", metavar="PATH", help="cache folder (the one holding manifest.json) or URL, or a task model "
                   "folder (erpack_task.json): then its task, expected cache and head/neuron importance are shown")
    p.add_argument("--ids", action="store_true", help="list the ids of the documents the cache holds instead, one "
                   "per line (with --json: one JSON list)")
    p.add_argument("--shards", type=int, default=10, help="list at most this many shards (default: 10)")
    p.add_argument("--json", action="store_true", help="also print the whole report as one JSON document on the last line")
    add_storage_options(p)
    p.set_defaults(run=run)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def _num(x, fmt: str = ".1f") -> str:
    return "n/a" if x is None else format(x, fmt)


def card(s: CacheStats, max_shards: int = 10) -> list[str]:
    """The human card of a cache's stats, listing at most `max_shards` shards."""
    model = s.model or {}
    sha = str(model.get("weights_sha256") or "?")[:16]
    tpd, bpd = s.tokens_per_document, s.bytes_per_document
    lines = [
        f"cache        {s.path} ({s.format}, "
        + ("manifest sealed by its checksum)" if s.sealed else "manifest not sealed: `erpack verify --seal` seals it)"),
        f"model        {model.get('name')} ({model.get('model_type')}, {model.get('num_layers')} layers, "
        f"hidden {s.hidden_size}), weights sha256 {sha}...",
        f"layer        {s.layer} (hidden states entering layer {s.layer}: the output of layers 0.."
        f"{s.layer - 1 if isinstance(s.layer, int) else '?'}), max_length {s.max_length}",
        f"tokenizer    {json.dumps(s.tokenizer)}",
        f"codec        {s.codec}" + (f", fitted state {s.codec_state['name']} ({human_bytes(s.state_bytes)}, "
                                     f"sha256 {s.codec_state['sha256'][:16]}...)" if s.codec_state else ""),
        f"documents    {s.documents} ({s.truncated} truncated at max_length), {s.tokens} tokens "
        f"(per document: mean {_num(tpd['mean'])}, median {_num(tpd['median'], '.0f')}, max {tpd['max']})",
        f"size         {human_bytes(s.bytes_on_disk)} on disk: {_num(s.bytes_per_token)} bytes per token, "
        f"{_num(bpd['mean'], '.0f')} bytes per document (median {_num(bpd['median'], '.0f')})",
        f"rate         {_num(s.bits_per_value, '.2f')} bits per value on disk "
        + (f"({_num(s.bits_per_value_without_state, '.2f')} without the fitted state; " if s.state_bytes else "(")
        + f"codec payload alone {_num(s.payload_bits_per_value, '.2f')}); "
        f"compression {_num(s.compression_vs_fp32, '.2f')}x vs fp32, {_num(s.compression_vs_fp16, '.2f')}x vs fp16",
        f"records      {s.records} ({s.dead_records} dead: superseded by a replace, still on disk), token ids "
        + (f"{human_bytes(s.token_id_bytes)} of them" if s.token_id_bytes else "not stored"),
        f"shards       {len(s.shards)}",
    ]
    for sh in s.shards[:max_shards]:
        lines.append(f"  {sh.name}  {sh.live}/{sh.records} live records, {sh.tokens} tokens, "
                     f"{human_bytes(sh.bytes)}")
    if len(s.shards) > max_shards:
        lines.append(f"  ... and {len(s.shards) - max_shards} more (--shards N lists more)")
    return lines


def task_model_card(folder) -> tuple[list[str], dict]:
    """A task model folder: what it was trained for, the cache it expects, and its importance scores."""
    from erpack.prune import describe_importance
    from erpack.train.taskmodel import check_folder

    info, _ = check_folder(folder)  # checksums, fields, config, weights; TaskModelError names what is wrong
    d = describe_importance(folder)
    expected = info.get("cache") or {}
    lines = [f"task model   {folder}",
             f"task         {info.get('task')} ({', '.join(map(str, info.get('labels') or []))}), mode {info.get('mode')}",
             f"expects      a cache of {(expected.get('model') or {}).get('name')} at layer {expected.get('layer')} "
             f"(weights sha256 {str((expected.get('model') or {}).get('weights_sha256'))[:16]}...), "
             f"codec {expected.get('codec_spec')}"
             + (" (computes from text: its own tuned lower layers)" if info.get("input") == "text" else "")]
    if info.get("version", 1) >= 2:
        lines.append(f"files        {len(info['files'])} checked against their sha256 in erpack_task.json")
    if d.get("pruning"):
        kept = [f"{len(layer['heads'])}h/{layer['intermediate_size']}n" for layer in d["pruning"].get("layers", [])]
        lines.append(f"pruning      kept per layer (heads/neurons): {' '.join(kept)}; dropped layers: "
                     f"{d['pruning'].get('dropped') or 'none'}")
    if not d.get("layers"):
        lines.append("importance   none (run `erpack prune` to score heads and neurons)")
    for row in d.get("layers", []):
        heads = " ".join(f"{h:.2f}" for h in row["heads"])
        n = row["neurons"]
        lines.append(f"layer {row['layer']:<6} score {row['layer_score']:.3f}  heads [{heads}]  neurons "
                     f"{n['count']} (median {n['median'] if n['median'] is None else round(n['median'], 4)})")
    return lines, {"task": info, "importance": d}


def run(args) -> int:
    folder = Path(args.cache)
    if not is_remote(args.cache) and (folder / "erpack_task.json").is_file():
        lines, data = task_model_card(folder)
        print("\n".join(lines))
        if args.json:
            print(json.dumps(data, default=str))
        return 0
    with CacheReader(cache_where(args.cache, args)) as reader:
        if args.ids:
            ids = reader.ids()
            print(json.dumps(ids) if args.json else "\n".join(ids))
            return 0
        stats = reader.stats()
    print("\n".join(card(stats, args.shards)))
    if args.json:
        print(json.dumps(stats.as_dict()))
    return 0
