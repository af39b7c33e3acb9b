"""onnxruntime sessions for the export stage: the one home is erpack.runtime.session (torch-free, so the
deployment runtime uses it too); this module keeps the names export code and users import from here."""

from erpack.runtime.session import DEVICES, Session, create_session, ort

__all__ = ["DEVICES", "Session", "create_session", "ort"]
