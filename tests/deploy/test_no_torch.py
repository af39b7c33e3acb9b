"""The bundle's runtime in a process where importing torch or transformers (or any other heavy library
erpack uses elsewhere) fails: it predicts from text and from a cache, the CLI predicts and verifies,
and the third-party packages it imported are only those of the `serve` extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ["torch", "transformers", "onnx", "onnxscript", "safetensors", "tqdm", "huggingface_hub", "peft",
           "bitsandbytes", "optimum", "matplotlib", "ray", "pyarrow", "datasets"]
# What the serve extra installs (and what those import of their own).
ALLOWED = {"numpy", "onnxruntime", "tokenizers", "zstandard", "fsspec", "packaging", "coloredlogs", "humanfriendly",
           "flatbuffers", "google", "sympy", "mpmath"}
# What the service adds (fastapi, uvicorn, prometheus-client, and their own imports).
SERVICE = {"fastapi", "starlette", "pydantic", "pydantic_core", "annotated_types", "annotated_doc", "typing_extensions",
           "typing_inspection", "anyio", "sniffio", "idna", "uvicorn", "h11", "click", "prometheus_client",
           "opentelemetry", "importlib_metadata", "zipp"}

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is blocked in this test: the runtime must not import it",
                                      name=name.split(".")[0])
        return None
sys.meta_path.insert(0, Blocker())
for m in list(sys.modules):
    if m.split(".")[0] in BLOCKED:
        del sys.modules[m]
"""

SCRIPT = BLOCKER + """
import json, sys
from erpack.deploy import BundleRuntime
rt = BundleRuntime(sys.argv[1], device="cpu")
texts = rt.predict_texts(["w1 w2 w3", "w9"]).rows
cached = rt.predict_ids(sys.argv[2], ["d000", "d001"]).rows
third = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {"erpack"}
               - {m for m in sys.modules if m.startswith("_")})
print(json.dumps({"texts": texts, "cached": cached, "third_party": third}))
"""

SERVE = BLOCKER + """
import json, sys, threading, time, urllib.request
from erpack.cluster.s3local import free_port
from erpack.deploy.engine import Engine
from erpack.deploy.service import create_app, server
port = free_port()
srv = server(create_app(Engine({"rt": sys.argv[1]}, cache=sys.argv[2], device="cpu")), port=port)
thread = threading.Thread(target=srv.run, daemon=True)
thread.start()
while not srv.started:
    time.sleep(0.02)
def post(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())
texts = post({"texts": ["w1 w2 w3", "w9"]})["predictions"]["rt"]
cached = post({"ids": ["d000", "d001"]})["predictions"]["rt"]
metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
srv.should_exit = True
thread.join(30)
third = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {"erpack"}
               - {m for m in sys.modules if m.startswith("_")})
print(json.dumps({"texts": texts, "cached": cached, "third_party": third, "metrics": "erpack_cache_reads" in metrics}))
"""

CLI = BLOCKER + """
import sys
from erpack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(code: str, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          input=stdin, timeout=300, cwd=ROOT)


def test_the_blocker_blocks():
    done = _run(BLOCKER + "import torch")
    assert done.returncode != 0 and "blocked in this test" in done.stderr


def test_the_runtime_predicts_without_torch_or_transformers(bundle, tiny):
    done = _run(SCRIPT, bundle[0], tiny["cache"])
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert [r["source"] for r in out["texts"]] == ["text", "text"]
    assert [r["id"] for r in out["cached"]] == ["d000", "d001"] and all("predicted" in r for r in out["cached"])
    assert not set(out["third_party"]) & set(BLOCKED)
    assert set(out["third_party"]) <= ALLOWED, f"imported beyond the serve extra: {set(out['third_party']) - ALLOWED}"
    # what the runtime predicts here equals what it predicts in the full environment
    from erpack.deploy import BundleRuntime

    assert out["cached"] == BundleRuntime(bundle[0], device="cpu").predict_ids(tiny["cache"], ["d000", "d001"]).rows


KINDS = BLOCKER + """
import json, sys
from erpack.deploy import BundleRuntime
rt = BundleRuntime(sys.argv[1], device="cpu")
rows = rt.predict_texts(json.loads(sys.argv[2])).rows
third = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {"erpack"}
               - {m for m in sys.modules if m.startswith("_")})
print(json.dumps({"rows": rows, "third_party": third}))
"""


def test_token_and_exit_bundles_predict_without_torch(token_bundle, exit_bundle, tok):
    words = list(tok["docs"][2].words)
    for folder, texts, key in [(token_bundle[0], [" ".join(words)], "words"), (exit_bundle[0], ["w1 w2", "w3"], "layers")]:
        done = _run(KINDS, folder, json.dumps(texts))
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.splitlines()[-1])
        assert all(key in r for r in out["rows"]) and set(out["third_party"]) <= ALLOWED
        from erpack.deploy import BundleRuntime

        assert out["rows"] == BundleRuntime(folder, device="cpu").predict_texts(texts).rows


TOKEN_IDS = BLOCKER + """
import json, sys
from erpack.deploy import BundleRuntime
rt = BundleRuntime(sys.argv[1], device="cpu")
words = json.loads(sys.argv[3])
rows = rt.predict_ids(sys.argv[2], list(words), words={i: (w, i) for i, w in words.items()}).rows
third = sorted({m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {"erpack"}
               - {m for m in sys.modules if m.startswith("_")})
print(json.dumps({"rows": rows, "third_party": third}))
"""


def test_a_token_bundle_predicts_cached_ids_given_words_without_torch(token_bundle, tok):
    """Cached ids with their words through the runtime alone; `--labels` (read by erpack.train) names the extra."""
    words = {d.id: list(d.words) for d in tok["docs"][1:4]}
    done = _run(TOKEN_IDS, token_bundle[0], tok["cache"], json.dumps(words))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert [r["words"] for r in out["rows"]] == list(words.values()) and set(out["third_party"]) <= ALLOWED
    from erpack.deploy import BundleRuntime

    want = BundleRuntime(token_bundle[0], device="cpu").predict_ids(
        tok["cache"], list(words), words={i: (w, i) for i, w in words.items()}).rows
    assert out["rows"] == want
    done = _run(CLI, "predict", token_bundle[0], tok["cache"], "--labels", tok["labels"], "--device", "cpu")
    assert done.returncode == 2 and "pip install 'erpack[full]'" in done.stderr and "Traceback" not in done.stderr


def test_the_service_serves_without_torch_or_transformers(bundle, tiny):
    done = _run(SERVE, bundle[0], tiny["cache"])
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert [r["source"] for r in out["texts"]] == ["text", "text"] and out["metrics"]
    assert [r["id"] for r in out["cached"]] == ["d000", "d001"] and all("predicted" in r for r in out["cached"])
    assert not set(out["third_party"]) & set(BLOCKED)
    beyond = set(out["third_party"]) - ALLOWED - SERVICE
    assert not beyond, f"imported beyond the serve extra: {beyond}"


def test_the_cli_predicts_and_verifies_without_torch(bundle, tiny):
    done = _run(CLI, "predict", bundle[0], "--text", "w1 w2", "--text", "w3")
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["id"] for x in done.stdout.splitlines()] == ["text-0", "text-1"]
    done = _run(CLI, "predict", bundle[0], stdin="w4 w5\nw6\n")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2, done.stderr
    done = _run(CLI, "predict", bundle[0], tiny["cache"], "--ids", "d000,d005")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2, done.stderr
    done = _run(CLI, "verify", bundle[0])
    assert done.returncode == 0 and "result     OK" in done.stdout, done.stderr


def test_a_command_that_needs_torch_names_the_extra(tiny):
    done = _run(CLI, "inspect", tiny["task_model"])
    if done.returncode == 0:  # inspect of a task model may not need torch; train always does
        done = _run(CLI, "train", tiny["cache"], "--labels", "x.jsonl", "-o", "/nonexistent/out")
    assert done.returncode == 2 and "pip install 'erpack[full]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
