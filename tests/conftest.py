"""Test-wide settings: the suite is offline (no hub look-ups), and uses few threads on the 2-core CI."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

pytest_plugins = ["tests.services"]


from tests.store.fitted import fitted_codec  # noqa: E402,F401  (the test-only fitted codec's fixture, for every test)
