"""The report's figures (matplotlib, Agg), each returned as PNG bytes; None when there is nothing to draw."""

from __future__ import annotations

import io
from pathlib import Path

from erpack.errors import ErpackError
from erpack.report.units import TIB, human_size


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ErpackError("the report's figures need matplotlib: pip install 'erpack[report]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    # "tight" grows the canvas to whatever is drawn: point labels and legends outside the axes stay whole
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15)
    _plt().close(fig)
    return buf.getvalue()


def quality(rows: list[dict], points: list[dict]) -> bytes | None:
    """Bits per value against SQNR (codec rows) and against accuracy or agreement (bench points)."""
    sq = [r for r in rows if r.get("sqnr_db") is not None]
    acc = [p for p in points if p["bits_per_value"] is not None and (p["accuracy"] is not None or p["agreement"] is not None)]
    if not sq and not acc:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if sq and acc else 1, figsize=(12 if sq and acc else 7.5, 4))
    axes = list(axes) if sq and acc else [axes]
    if sq:
        ax = axes[0]
        for r in sq:
            ax.scatter(r["bits_per_value"], r["sqnr_db"], color="tab:blue")
            ax.annotate(r["codec"], (r["bits_per_value"], r["sqnr_db"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel("bits per value on disk")
        ax.set_ylabel("SQNR dB (vs lossless reference)")
        ax.set_title("size against reconstruction quality")
        ax.margins(x=0.2, y=0.12)  # room for the codec labels right of and above the last points
        ax.grid(alpha=0.3)
    if acc:
        ax = axes[-1]
        use_acc = any(p["accuracy"] is not None for p in acc)
        if use_acc:  # accuracy where a trained head was benchmarked; agreement of untrained heads is noise
            acc = [p for p in acc if p["accuracy"] is not None]
        models = sorted({str(p["model"]) for p in acc})
        marks = "os^Dvx"
        for p in acc:
            y = 100 * (p["accuracy"] if use_acc else p["agreement"])
            ax.scatter(p["bits_per_value"], y, marker=marks[models.index(str(p["model"])) % len(marks)],
                       label=f"{Path(str(p['model'])).name} {p['path']} {p['codec']}")
        ax.set_xlabel("bits per value on disk")
        ax.set_ylabel("accuracy %" if use_acc else "agreement with full model % (untrained head)")
        ax.set_title("size against task quality")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def speedup(points: list[dict]) -> bytes | None:
    """Speedup against the full PyTorch model, per erpack path, against bytes per token; bound drawn."""
    pts = [p for p in points if p["bytes_per_token"] is not None and p["speedup"] is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    markers = {"erpack-torch": "o", "erpack-onnx-fp32": "s", "erpack-onnx-int8": "^", "erpack-pruned-int8": "D"}
    groups = sorted({(p["model"], p["layer"], p["bound"]) for p in pts})
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for g, (model, layer, bound) in enumerate(groups):
        c = colors[g % len(colors)]
        ax.axhline(bound, color=c, linestyle="--", linewidth=1, label=f"{Path(str(model)).name} k={layer}: bound L/(L-k) = {bound:.2f}x")
        full_onnx = [p for p in points if p["model"] == model and p["layer"] == layer and p["path"] == "full-onnx-int8"]
        for p in full_onnx:
            ax.axhline(p["speedup"], color=c, linestyle=":", linewidth=1,
                       label=f"{Path(str(model)).name}: full model ONNX int8 {p['speedup']:.2f}x")
        for p in pts:
            if (p["model"], p["layer"]) == (model, layer):
                ax.scatter(p["bytes_per_token"], p["speedup"], color=c, marker=markers.get(p["path"], "x"))
                ax.annotate(f"{p['path'].replace('erpack-', '')} {p['codec']}", (p["bytes_per_token"], p["speedup"]),
                            fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    xs = [p["bytes_per_token"] for p in pts]
    ax.set_xlim(min(xs) / 1.15, max(xs) * 1.4)  # room for the labels right of the last points
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="x", which="both", labelsize=7)
    ax.set_xlabel("cache bytes per token on disk (log)")
    ax.set_ylabel("speedup vs full model in PyTorch (end to end)")
    ax.set_title("end-to-end speedup against cache size (points above a dotted line beat that full ONNX int8 model)",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def profile(prof: dict) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    h = prof["histogram"]
    edges = h["edges"]
    ax.bar(edges[:-1], h["counts"], width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge",
           color="tab:gray")
    ax.axvline(prof["mean"], color="tab:red", label=f"mean {prof['mean']:.0f}")
    ax.set_xlabel("tokens per document")
    ax.set_ylabel("documents")
    ax.set_title(f"length profile: {prof['name']}")
    ax.legend(fontsize=8)
    return _png(fig)


def storage(rows: list[dict]) -> bytes:
    return _png(storage_figure(rows))


def storage_figure(rows: list[dict]):
    """Projected size per codec row, in TiB, labelled with its size and monthly cost."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rows)))
    labels = [f"{r['codec']} ({Path(str(r['model'])).name} k={r['layer']}, "
              f"{'cache' if r['kind'] == 'cache' else 'sample'})" for r in rows]
    tb = [r["projection"]["bytes"] / TIB for r in rows]
    ax.barh(range(len(rows)), tb, color=["tab:blue" if r["kind"] == "cache" else "tab:cyan" for r in rows])
    ax.set_yticks(range(len(rows)), labels)
    for i, r in enumerate(rows):
        ax.text(tb[i], i, f" {human_size(r['projection']['bytes'])}, ${r['projection']['monthly_cost']:,.2f}/month",
                va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("projected size, TiB (2^40 bytes)")
    ax.set_xlim(0, max(tb) * 1.5)
    d = rows[0]["projection"]["documents"]
    ax.set_title(f"projected cache size for {d:,.0f} documents")
    ax.tick_params(axis="y", labelsize=7)
    return fig



def depth_speed(points: list[dict], title: str, recycling: float | None) -> bytes | None:
    """Accuracy against upper-stack speed, one curve per method and result file (erpack.experiments.depth_plot's
    points): measured speed solid with filled markers, each point's compute bound dashed with hollow markers of
    the same colour; with `recycling` = L/(L-k), a top axis of the speed against the full L-layer encoder. When
    some points lie more than 5 accuracy points below the best, a second panel zooms on the top 3."""
    if not points:
        return None
    plt = _plt()
    best = max(p["accuracy"] for p in points)
    zoom = min(p["accuracy"] for p in points) < best - 0.05
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(14 if zoom else 9, 5))
    axes = list(axes) if zoom else [axes]
    styles = {"exit": ("tab:blue", "o", "early exit"), "ode": ("tab:green", "s", "ODE steps"),
              "prune": ("tab:red", "D", "pruning")}
    for n, ax in enumerate(axes):
        lo = best - 0.03 if n else None
        for method, (color, marker, name) in styles.items():
            files = list(dict.fromkeys(p["file"] for p in points if p["method"] == method))
            for j, f in enumerate(files):
                pts = sorted((p for p in points if p["file"] == f), key=lambda p: p["ideal"])
                tag = f"{name} ({Path(f).stem})"
                line = ["--", "-."][j % 2]
                ax.plot([p["ideal"] for p in pts], [p["accuracy"] for p in pts], linestyle=line, color=color,
                        marker=marker, markerfacecolor="none", linewidth=1, label=f"{tag}: compute bound")
                meas = sorted((p for p in pts if p["measured"] is not None), key=lambda p: p["measured"])
                if meas:
                    ax.plot([p["measured"] for p in meas], [p["accuracy"] for p in meas], linestyle="-",
                            color=color, marker=marker, alpha=1 if j == 0 else 0.6, label=f"{tag}: measured")
                for p in pts:
                    if lo is not None and p["accuracy"] < lo:
                        continue
                    x = p["measured"] if p["measured"] is not None else p["ideal"]
                    ax.annotate(p.get("short", p["point"]), (x, p["accuracy"]), fontsize=6, xytext=(3, 3 + 6 * j),
                                textcoords="offset points", color=color)
        ax.axvline(1.0, color="grey", linewidth=0.8)
        ax.set_xlabel("upper-stack speed vs the same task model's full upper stack (x)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.1)
        if lo is not None:
            ax.set_ylim(lo, best + 0.006)
            xs = [x for p in points if p["accuracy"] >= lo for x in (p["ideal"], p["measured"]) if x is not None]
            ax.set_xlim(min(0.9, min(xs) - 0.1), max(xs) * 1.1 + 0.1)
            ax.set_title("zoom: within 3 accuracy points of the best", fontsize=9)
        else:
            ax.set_ylabel("test accuracy")
            ax.set_title(title, fontsize=9)
        if recycling:
            top = ax.secondary_xaxis("top", functions=(lambda x: x * recycling, lambda x: x / recycling))
            top.set_xlabel(f"the same x L/(L-k): vs the full L-layer encoder (recycling bound {recycling:.2f} at 1)",
                           fontsize=8)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)
