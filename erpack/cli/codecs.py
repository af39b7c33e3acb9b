"""`erpack codecs`: the codecs, their parameters, the presets and the spec grammar."""

from __future__ import annotations

import json

from erpack.codecs import GRAMMAR, PRESETS, list_codecs
from erpack.codecs.selfcheck import check_all, cpu_description
from erpack.codecs.spec import format_stage

GRAMMAR_HELP = """\
spec grammar: stages joined by '+'; the first stage is one array codec, the rest byte codecs.
  stage := NAME | NAME:VALUE | NAME:KEY=VALUE,KEY=VALUE,...
  NAME:VALUE sets the codec's primary parameter (marked * below): zstd:3 == zstd:level=3.
  examples: int8c+zstd:3   int4:g=64,asym=1+zstd   bf16+shuffle:2+zstd:level=3,streams=2
  a preset name stands for its stages: int8z == int8c:41+zstd:3"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "codecs",
        help="list the codecs, their parameters, the presets and the spec grammar",
        description=(
            "List every codec a pipeline can use (array codecs quantize a (tokens, hidden) float32 record "
            "to bytes; byte codecs follow them), each with its parameters and defaults, the named presets, "
            "and the grammar of spec strings such as 'int8c+zstd:3' accepted by --codec everywhere. "
            "Measured sizes and SQNR: docs/results/codecs.md, or `erpack compress SOURCE --codec SPEC`."
        ),
    )
    p.add_argument("--check", action="store_true",
                   help="run the known-answer check of every codec whose kernels come from a library (bitsandbytes), "
                        "every block size, on this machine: one line each; exit status 1 if any is refused")
    p.add_argument("--json", action="store_true", help="print one JSON document (grammar, presets, codecs) instead")
    p.set_defaults(run=run)


def describe_param(prm: dict, primary: str | None) -> str:
    star = "*" if prm["name"] == primary else ""
    return f"{prm['name']}{star}={json.dumps(prm['default'])}"


def run_check(as_json: bool) -> int:
    """`erpack codecs --check`: the self-check of the library codecs (erpack/codecs/selfcheck.py)."""
    results = check_all()
    if as_json:
        print(json.dumps({"cpu": cpu_description(), "codecs": [
            {"codec": format_stage(c), "library": c.library, "version": c.library_version(), "refused": why}
            for c, why in results]}))
    else:
        print(f"CPU: {cpu_description()}")
        for codec, why in results:
            print(f"REFUSED  {why}" if why else f"ok       {format_stage(codec)} ({codec.library} {codec.library_version()})")
    return 1 if any(why for _, why in results) else 0


def run(args) -> int:
    if args.check:
        return run_check(args.json)
    codecs = list_codecs()
    if args.json:
        print(json.dumps({"grammar": GRAMMAR, "presets": PRESETS, "codecs": codecs}))
        return 0
    print(GRAMMAR_HELP)
    for kind, title in (("array", "array codecs (first stage, exactly one)"), ("bytes", "byte codecs (after it)")):
        print(f"\n{title}:")
        for c in (c for c in codecs if c["kind"] == kind):
            params = " ".join(describe_param(p, c["primary"]) for p in c["params"]) or "(no parameters)"
            flag = " [lossless]" if c["lossless"] else ""
            print(f"  {c['id']:8s} {params}{flag}")
            print(f"           {c['description']}")
            for prm in c["params"]:
                print(f"           - {prm['name']}: {prm['help']}")
    print("\npresets:")
    for name, spec in PRESETS.items():
        print(f"  {name:8s} = {spec}")
    return 0
