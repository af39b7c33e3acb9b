"""The report as Markdown, JSON and one self-contained HTML file (figures embedded as base64 PNG).

The same tables go into Markdown and HTML: `tables(report)` builds them once as (title, header,
rows); Markdown links the figures as PNG files written beside it, HTML embeds them.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from erpack.report import plots
from erpack.report.build import Report
from erpack.report.units import human_size, mib_per_second


def _n(v, f="{:.2f}", none="-") -> str:
    return none if v is None else f.format(v)


def _short(name) -> str:
    """A model or cache by its last path component (the full paths are listed under Inputs)."""
    return Path(str(name)).name or str(name)


def _short_source(r: dict) -> str:
    if r["kind"] == "cache":
        return f"cache {_short(r['source'])}"
    lossy = "" if r.get("reference_lossless", True) else ", lossy"
    return f"{r['documents']} records of {_short(r.get('reference', 'the first cache'))}{lossy}"


def tables(rep: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    rows = rep.rows
    out = []
    out.append(("Measured size per codec",
                ["codec", "model", "k", "measured", "documents", "tokens", "bits/value", "bytes/token",
                 "bytes/document", "fit a (B/doc)", "fit b (B/token)", "SQNR dB", "encode MiB/s", "decode MiB/s"],
                [[f"`{r['codec']}`", _short(r["model"]), str(r["layer"]), _short_source(r), str(r["documents"]),
                  str(r["tokens"]), _n(r["bits_per_value"], "{:.3f}"), _n(r["bytes_per_token"], "{:.1f}"),
                  _n(r["bytes_per_document"], "{:.0f}"), _n(r["fit"]["a"], "{:.1f}"), _n(r["fit"]["b"], "{:.2f}"),
                  "exact" if r["lossless"] else _n(r["sqnr_db"], "{:.2f}"), _n(mib_per_second(r["encode_MBps"]), "{:.0f}"),
                  _n(mib_per_second(r["decode_MBps"]), "{:.0f}")] for r in rows]))
    p = rows[0]["projection"]
    cfg = rep.config
    out.append((f"Projected: {p['documents']:,.0f} documents, {p['tokens']:,.0f} tokens "
                f"({rep.profile['name']} length profile), ${cfg.price_per_gib_month} per GiB-month",
                ["codec", "model", "k", "size", "bytes/document", "$ / month", "encode hours (once)",
                 "recompute hours / run", "read hours / run", "break-even runs"],
                [[f"`{r['codec']}`", _short(r["model"]), str(r["layer"]), human_size(r["projection"]["bytes"]),
                  _n(r["projection"]["bytes_per_document"], "{:,.0f}"), _n(r["projection"]["monthly_cost"], "{:,.2f}"),
                  _n(r["break_even"] and r["break_even"]["encode_seconds"] / 3600, "{:,.0f}"),
                  _n(r["break_even"] and r["break_even"]["recompute_seconds_per_run"] / 3600, "{:,.0f}"),
                  _n(r["break_even"] and r["break_even"]["read_seconds_per_run"] / 3600, "{:,.2f}"),
                  (_n(r["break_even"]["break_even_runs"], "{:.2f}") if r["break_even"]
                   and r["break_even"]["break_even_runs"] is not None else ("never" if r["break_even"] else "-"))]
                 for r in rows]))
    if rep.bench:
        out.append(("End-to-end inference (erpack bench)",
                    ["bench", "model", "k", "path", "codec", "bytes/token", "docs/s", "speedup", "bound",
                     "spread", "accuracy", "agreement"],
                    [[Path(b["bench"]).name, _short(b["model"]), str(b["layer"]), b["path"], f"`{b['codec'] or '-'}`",
                      _n(b["bytes_per_token"], "{:.0f}"), _n(b["documents_per_second"], "{:.1f}"),
                      _n(b["speedup"], "{:.2f}x"), _n(b["bound"], "{:.2f}x") if b["path"].startswith("erpack") else "-",
                      _n(100 * b["spread"], "{:.0f}%"),
                      _n(b["accuracy"] and 100 * b["accuracy"], "{:.1f}%",
                         "n/a (untrained head)" if not b["trained_head"] else "n/a"),
                      _n(b["agreement"], "{:.3f}")] for b in rep.bench]))
    pr = rep.profile
    out.append(("Length profile", ["profile", "documents", "tokens", "mean", "median", "p90", "max"],
                [[pr["name"], str(pr["documents"]), str(pr["tokens"]), f"{pr['mean']:.1f}", f"{pr['median']:.0f}",
                  f"{pr['p90']:.0f}", str(pr["max"])]]))
    return out


def figures(rep: Report) -> dict[str, bytes]:
    figs = {"storage": plots.storage(rep.rows), "profile": plots.profile(rep.profile),
            "speedup": plots.speedup(rep.bench), "quality": plots.quality(rep.rows, rep.bench)}
    return {k: v for k, v in figs.items() if v is not None}


def _assumptions(rep: Report) -> list[str]:
    cfg, lower = rep.config, rep.lower
    lines = [f"Storage price ${cfg.price_per_gib_month} per GiB-month (GiB = 2^30 bytes; sizes are binary: MiB = 2^20, TiB = 2^40); compute price "
             f"${cfg.price_per_hour} per machine-hour; cache kept {cfg.months:g} month(s)."]
    for lo in lower:
        lines.append(f"Lower stack: {lo['seconds_per_token'] * 1e6:.1f} µs per token ({lo['how']}, "
                     f"{lo['threads']} torch threads).")
    lines.append("Encode cost = lower stack + codec encode per token; read cost per run = read + decode per token "
                 "timed on the cache (warm page cache), or codec decode alone for re-encoded samples.")
    return lines


def markdown(rep: Report, figure_files: dict[str, str]) -> str:
    lines = ["# erpack storage-cost report", ""]
    lines += [f"Made by `{rep.command}`." if rep.command else "Made by erpack.report.", ""]
    lines += ["## Inputs", ""] + [f"- cache: `{c}`" for c in rep.inputs["caches"]]
    if rep.inputs["codecs_reencoded_from"]:
        lines.append(f"- re-encoded samples of: `{rep.inputs['codecs_reencoded_from']}`")
    lines += [f"- bench: `{b}` (`{c}`)" for b, c in zip(rep.inputs["bench"], rep.inputs["bench_commands"])]
    lines += [f"- length profile: {rep.inputs['profile']}"]
    lines += [""] + [f"- {a}" for a in _assumptions(rep)] + [""]
    for title, header, rows in tables(rep):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    if figure_files:
        lines += ["## Figures", ""] + [f"![{k}]({v})" for k, v in figure_files.items()] + [""]
    lines += ["## Formulas", ""] + [f"- {k}: {v}" for k, v in rep.formulas.items()] + [""]
    if rep.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}td{white-space:nowrap}
.wide{overflow-x:auto}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}code{background:#f5f5f5;padding:0 3px}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.5em}
.small{color:#555;font-size:13px}"""


def _cell(text: str) -> str:
    t = html.escape(text)
    if t.startswith("`") and t.endswith("`") and len(t) > 1:
        return f"<code>{t[1:-1]}</code>"
    return t


def to_html(rep: Report, figs: dict[str, bytes]) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>erpack storage-cost report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>erpack storage-cost report</h1>"]
    if rep.command:
        parts.append(f"<p class=\"small\">Made by <code>{e(rep.command)}</code></p>")
    parts.append("<h2>Inputs</h2><ul class=\"small\">")
    parts += [f"<li>cache: <code>{e(c)}</code></li>" for c in rep.inputs["caches"]]
    if rep.inputs["codecs_reencoded_from"]:
        parts.append(f"<li>re-encoded samples of: <code>{e(rep.inputs['codecs_reencoded_from'])}</code></li>")
    parts += [f"<li>bench: <code>{e(b)}</code> (<code>{e(str(c))}</code>)</li>"
              for b, c in zip(rep.inputs["bench"], rep.inputs["bench_commands"])]
    parts.append(f"<li>length profile: {e(rep.inputs['profile'])}</li>")
    parts += [f"<li>{e(a)}</li>" for a in _assumptions(rep)] + ["</ul>"]
    placed = {0: ["quality"], 1: ["storage"], 2: ["speedup"], 3: ["profile"]}
    for i, (title, header, rows) in enumerate(tables(rep)):
        parts.append(f"<h2>{e(title)}</h2><div class=\"wide\"><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header)
                     + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</tbody></table></div>")
        for name in placed.get(i, []):
            if name in figs:
                b64 = base64.b64encode(figs[name]).decode("ascii")
                parts.append(f"<img alt=\"{name}\" src=\"data:image/png;base64,{b64}\">")
    parts.append("<h2>Formulas</h2><ul class=\"small\">")
    parts += [f"<li>{e(k)}: {e(v)}</li>" for k, v in rep.formulas.items()] + ["</ul>"]
    if rep.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in rep.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(rep: Report, output) -> dict:
    """Write OUTPUT (.html, self-contained), and .md (with PNGs beside it) and .json next to it."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    figs = figures(rep)
    files = {}
    for name, png in figs.items():
        f = out.with_name(f"{out.stem}-{name}.png")
        f.write_bytes(png)
        files[name] = f.name
    out.write_text(to_html(rep, figs), encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text(markdown(rep, files), encoding="utf-8")
    js = out.with_suffix(".json")
    js.write_text(json.dumps(rep.as_dict(), indent=1, default=float) + "\n", encoding="utf-8")
    return {"html": str(out), "markdown": str(md), "json": str(js), "figures": [str(out.with_name(f)) for f in files.values()]}
