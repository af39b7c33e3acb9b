"""Measure what `pip install 'erpack[serve]'` installs in a fresh virtual environment, against the
full install, and check that the serve environment runs a bundle without torch.

    python tools/install_size.py                                   # serve vs full,onnx (what export needs)
    python tools/install_size.py --bundle BUNDLE --cache CACHE     # and predict with it in the serve venv
    python tools/install_size.py --all --write-results             # also the setup's every extra; write
                                                                   #   docs/results/deploy-install.json and
                                                                   #   the install section of docs/results/deploy.md

Each extra set is installed with `pip install -c constraints.txt '.[EXTRAS]'` (not editable: the
package's own files count) into a new venv under --work. The size is the sum of the files' sizes
in the venv, minus a bare venv's (pip itself), and `du -s` of the venv as the disk sees it; the
largest packages are listed. Prints a card, then one JSON document as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "docs" / "results" / "deploy-install.json"
RESULTS_MD = ROOT / "docs" / "results" / "deploy.md"
BEGIN, END = "<!-- install-size:begin -->", "<!-- install-size:end -->"
FULL = "full,serve,onnx,quant,train,report,scale,test"  # what tools/setup.sh installs


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def du_bytes(folder: Path) -> int:
    out = subprocess.run(["du", "-sk", str(folder)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) * 1024


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def largest(venv: Path, n: int = 8) -> list[dict]:
    """The n largest top-level entries of site-packages (packages and their .libs folders)."""
    sp = site_packages(venv)
    sizes = [(p.name, tree_bytes(p) if p.is_dir() else p.stat().st_size) for p in sp.iterdir()
             if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"]
    return [{"name": k, "bytes": v} for k, v in sorted(sizes, key=lambda t: -t[1])[:n]]


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def install(extras: str, work: Path, bare: int, reuse: bool = False) -> dict:
    venv = work / f"venv-{extras.replace(',', '-') or 'core'}"
    py = venv / "bin" / "python"
    seconds = None
    if reuse and RESULTS_JSON.exists():  # the install time of the run that made the venv, when it recorded it
        old = json.loads(RESULTS_JSON.read_text()).get("installs", [])
        seconds = next((r["install_seconds"] for r in old if r.get("venv") == str(venv)), None)
    if not (reuse and py.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        py = make_venv(venv)
        spec = f"{ROOT}[{extras}]" if extras else str(ROOT)
        t0 = time.perf_counter()
        done = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-cache-dir", "-c",
                               str(ROOT / "constraints.txt"), spec], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"pip install '{spec}' failed:\n{done.stderr[-3000:]}")
        seconds = round(time.perf_counter() - t0, 1)
        shutil.rmtree(ROOT / "build", ignore_errors=True)  # the non-editable build's leftovers
    frozen = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.splitlines()
    total = tree_bytes(venv)
    return {"extras": extras or "(core)", "venv": str(venv), "bytes": total - bare, "venv_bytes": total,
            "du_bytes": du_bytes(venv), "install_seconds": seconds,
            "packages": sorted(p for p in frozen if not p.startswith("erpack")), "largest": largest(venv),
            "has_torch": any(p.lower().startswith(("torch==", "transformers==")) for p in frozen)}


def smoke(venv: Path, bundle: str | None, cache: str | None) -> dict:
    """In the serve venv: the runtime imports without torch; with a bundle, predict and verify run."""
    py, erpack = venv / "bin" / "python", venv / "bin" / "erpack"
    out = {}
    code = ("import sys, erpack.deploy.runtime; print(sorted(m for m in ('torch', 'transformers') "
            "if m in sys.modules))")
    # -I: isolated (no PYTHONPATH, no current folder on the path: a stray enum.py in /tmp once shadowed the stdlib)
    done = subprocess.run([str(py), "-I", "-c", code], capture_output=True, text=True, cwd=str(venv))
    out["runtime_import"] = done.stdout.strip() if done.returncode == 0 else f"failed: {done.stderr[-500:]}"
    if bundle:
        t0 = time.perf_counter()
        done = subprocess.run([str(erpack), "predict", bundle, "--text", "a quietly moving film", "--text",
                               "dull and far too long"], capture_output=True, text=True)
        out["predict_texts"] = {"rc": done.returncode, "seconds": round(time.perf_counter() - t0, 2),
                                "rows": done.stdout.splitlines(), "stderr": done.stderr.strip()[-500:]}
        done = subprocess.run([str(erpack), "verify", bundle], capture_output=True, text=True)
        out["verify"] = {"rc": done.returncode, "result": done.stdout.strip().splitlines()[-1:]}
        if cache:
            done = subprocess.run([str(erpack), "predict", bundle, cache], capture_output=True, text=True)
            out["predict_cache"] = {"rc": done.returncode, "documents": len(done.stdout.splitlines()),
                                    "stderr": done.stderr.strip()[-300:]}
    return out


def failures(result: dict) -> list[str]:
    """What makes the run fail (CI): torch in the serve venv, a runtime that does not import, a bundle
    command that failed there."""
    serve, smoke = result["installs"][0], result["smoke"]
    out = ["the serve extra installed torch or transformers"] if serve["has_torch"] else []
    if smoke.get("runtime_import") != "[]":
        out.append(f"importing erpack.deploy.runtime in the serve venv: {smoke.get('runtime_import')}")
    out += [f"{name} exited {smoke[name]['rc']} in the serve venv: {smoke[name].get('stderr', '')}"
            for name in ("predict_texts", "verify", "predict_cache") if name in smoke and smoke[name]["rc"] != 0]
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True).stdout.split()[1]
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "pip": pip, "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def card(result: dict) -> list[str]:
    lines = [f"machine  {result['machine']['cpu']}, Python {result['machine']['python']}, pip {result['machine']['pip']}"]
    for r in result["installs"]:
        top = ", ".join(f"{x['name']} {mb(x['bytes'])}" for x in r["largest"][:5])
        lines.append(f"{r['extras']:<46} {mb(r['bytes']):>9} installed (du {mb(r['du_bytes'])}), {len(r['packages'])} "
                     f"packages, torch: {'yes' if r['has_torch'] else 'no'}, install {r['install_seconds']} s")
        lines.append(f"    largest: {top}")
    serve, *rest = result["installs"]
    for r in rest:
        lines.append(f"serve is {serve['bytes'] / r['bytes']:.1%} of [{r['extras']}] ({r['bytes'] / serve['bytes']:.1f}x "
                     "smaller)")
    if result.get("smoke"):
        lines.append(f"serve venv: {json.dumps(result['smoke'])[:600]}")
    return lines


def markdown(result: dict, command: str) -> str:
    m = result["machine"]
    rows = ["| install | packages | installed | du | torch | largest packages |", "|---|---|---|---|---|---|"]
    for r in result["installs"]:
        top = ", ".join(f"{x['name']} {mb(x['bytes'])}" for x in r["largest"][:4])
        rows.append(f"| `pip install 'erpack[{r['extras']}]'` | {len(r['packages'])} | {mb(r['bytes'])} | "
                    f"{mb(r['du_bytes'])} | {'yes' if r['has_torch'] else 'no'} | {top} |")
    serve = result["installs"][0]
    ratios = "; ".join(f"{r['bytes'] / serve['bytes']:.1f}x smaller than `[{r['extras']}]`"
                       for r in result["installs"][1:])
    smoke = result.get("smoke") or {}
    check = ""
    if "predict_texts" in smoke:
        p = smoke["predict_texts"]
        check = (f"\nIn the serve environment, `erpack predict BUNDLE --text ... --text ...` exited {p['rc']} in "
                 f"{p['seconds']} s (process start to exit, two texts) and `erpack verify BUNDLE` exited "
                 f"{smoke['verify']['rc']}; importing the runtime loaded "
                 + ("neither torch nor transformers" if smoke["runtime_import"] == "[]" else smoke["runtime_import"])
                 + ".\n")
    return (f"{BEGIN}\n## Installed size: the serve extra against the full install\n\n"
            f"Measured {m['time']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, pip {m['pip']}, "
            f"each in a fresh virtual environment with the versions of constraints.txt:\n\n    {command}\n\n"
            + "\n".join(rows) + f"\n\n`installed` is the sum of the files' sizes, less a bare venv's "
            f"({mb(result['bare_bytes'])}: pip); `du` is the whole venv on disk. The serve extra is {ratios}."
            + (" With --reuse the venvs of an earlier run were measured again." if result.get("reused") else "")
            + "\n"
            + check + f"{END}\n")


def write_results(result: dict, command: str) -> None:
    RESULTS_JSON.write_text(json.dumps(result, indent=1) + "\n")
    section = markdown(result, command)
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else (
        "# Deployment: measured figures\n\nWhat the bundle, its runtime and the service measure; each section names "
        "its command and machine (the guide is [docs/deploy.md](../deploy.md)).\n\n")
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text += section
    RESULTS_MD.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None, help="folder for the venvs (default: a temporary one, removed after)")
    ap.add_argument("--all", action="store_true", help=f"also measure what tools/setup.sh installs ([{FULL}])")
    ap.add_argument("--reuse", action="store_true", help="measure the venvs already in --work instead of "
                    "installing them again (install_seconds then null)")
    ap.add_argument("--bundle", default=None, help="a bundle to predict with in the serve venv")
    ap.add_argument("--cache", default=None, help="with --bundle: a cache to predict every document of")
    ap.add_argument("--render", action="store_true", help="only render docs/results/deploy.md's install section "
                    "again from docs/results/deploy-install.json")
    ap.add_argument("--write-results", action="store_true", help="write docs/results/deploy-install.json and the "
                    "install section of docs/results/deploy.md")
    args = ap.parse_args()
    if args.render:  # the page again from the recorded result, after a change of wording
        result = json.loads(RESULTS_JSON.read_text())
        write_results(result, result.get("command") or "python tools/install_size.py --all --write-results")
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="erpack-size-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        make_venv(work / "bare")
        bare = tree_bytes(work / "bare")
        sets = ["serve", "full,onnx"] + ([FULL] if args.all else [])
        result = {"machine": machine(), "bare_bytes": bare, "reused": args.reuse, "command": None,
                  "installs": [install(s, work, bare, args.reuse) for s in sets]}
        result["smoke"] = smoke(Path(result["installs"][0]["venv"]), args.bundle, args.cache)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python tools/install_size.py" + (" --all" if args.all else "") + (
        f" --work {args.work}" if args.work else "") + (" --reuse" if args.reuse else "") + (
        " --bundle BUNDLE" if args.bundle else "") + (" --cache CACHE" if args.cache else "") + " --write-results"
    result["command"] = command
    problems = failures(result)
    result["ok"] = not problems
    print("\n".join(card(result) + [f"FAILED   {p}" for p in problems]))
    if args.write_results:
        write_results(result, command)
    print(json.dumps(result))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
