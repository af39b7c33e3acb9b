"""Deployment: a task model as one self-contained folder (a bundle), and the runtime that serves it
without torch or transformers.

    erpack export models/rt --bundle bundles/rt --calibration-cache caches/rt    # erpack.deploy.build (torch)
    rt = BundleRuntime("bundles/rt")                                             # numpy + onnxruntime + tokenizers
    rt.predict_texts(["a fine film"]).rows; rt.predict_ids("caches/rt", ["d001"]).rows
    verify_bundle("bundles/rt").ok

Modules: bundle (the folder and bundle.json: sealed, every file's sha256), tokenizer (tokenizer.json
called as erpack.tokens calls a transformers tokenizer), runtime (BundleRuntime: predictions from
cached ids or from text), verify (every byte checked), build (write_bundle: export, check, publish;
imports torch, so it is not imported here). See docs/deploy.md.
"""

from erpack.deploy.bundle import Bundle, is_bundle
from erpack.deploy.runtime import BundleRuntime, Predictions, load_runtime
from erpack.deploy.verify import BundleReport, verify_bundle

__all__ = ["Bundle", "BundleReport", "BundleRuntime", "Predictions", "is_bundle", "load_runtime", "verify_bundle"]
