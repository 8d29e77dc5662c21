"""Suite-wide settings: deterministic, CPU-bounded, offline."""

from __future__ import annotations

import os

# The CI machine has 2 cores; more threads only add contention.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
