"""onnxruntime sessions: CUDA when present and asked for, else CPU, and the providers actually used.

onnxruntime-gpu asked for CUDA on a host without a usable GPU logs errors and silently runs on the
CPU, so the answer here is read back from `session.get_providers()`, never assumed. No torch here:
export, predict and the deployment runtime (erpack.deploy) all open their graphs through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from erpack.errors import ErpackError, ExportError

DEVICES = ("auto", "cpu", "cuda")


def ort():
    """The onnxruntime module, or an error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ErpackError("onnxruntime is not installed: pip install 'erpack[serve]' (a bundle's runtime) or "
                          "'erpack[onnx]' (export), or their -gpu variants on CUDA hosts (never a CPU and a GPU "
                          "onnxruntime in one environment)") from None
    return onnxruntime


@dataclass
class Session:
    session: object  # onnxruntime.InferenceSession
    path: str
    requested: list[str]
    providers: list[str]  # what onnxruntime actually runs, in priority order
    notes: list[str] = field(default_factory=list)

    @property
    def provider(self) -> str:
        return self.providers[0]

    def run(self, feeds: dict):
        """The graph's outputs for `feeds`, of which the inputs the graph declares (an exporter may drop an input
        the traced model never read, such as MRA's attention_mask: export parity checks the graph without it)."""
        names = self.input_names
        return self.session.run(None, {k: v for k, v in feeds.items() if k in names})

    @cached_property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]


def create_session(path, device: str = "auto", threads: int | None = None) -> Session:
    """An InferenceSession on `path`. device: auto (CUDA when onnxruntime offers it), cuda (asked for;
    a fallback to CPU comes back as a note), or cpu. threads: intra-op threads (default: onnxruntime's)."""
    rt = ort()
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ErpackError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"graph file {path} does not exist; write one with `erpack export`")
    available = rt.get_available_providers()
    notes = []
    if device == "cpu":
        requested = ["CPUExecutionProvider"]
    elif "CUDAExecutionProvider" in available:
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        requested = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    else:
        requested = ["CPUExecutionProvider"]
        if device != "auto":
            notes.append(f"CUDA asked for, but this onnxruntime offers {', '.join(available)} "
                         "(install onnxruntime-gpu on a CUDA host); running on the CPU")
    options = rt.SessionOptions()
    options.log_severity_level = 3  # errors only: a CUDA fallback is reported below, not in a log line
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = rt.InferenceSession(str(path), sess_options=options, providers=requested)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ExportError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0][:300]}; export it again") from None
    used = session.get_providers()
    names = [p if isinstance(p, str) else p[0] for p in requested]
    if names[0] == "CUDAExecutionProvider" and used[0] != "CUDAExecutionProvider":
        notes.append(f"CUDAExecutionProvider was requested but onnxruntime fell back to {used[0]} "
                     "(no usable GPU or CUDA libraries)")
    return Session(session, str(path), names, used, notes)
