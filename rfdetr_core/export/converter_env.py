"""A private virtual environment for the ONNX → TFLite converter.

``onnx2tf`` pins exact versions of numpy, TensorFlow, onnx and onnxruntime that conflict with the rest of
the stack, so it never goes into the main environment. Instead the project creates its own venv on first
use (pinned, so every machine converts with the same tools), marks it complete with a stamp file and
reuses it afterwards. Everything that needs TensorFlow runs there as a subprocess.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENV_VAR = "RFDETR_CONVERTER_VENV"
PIP_TIMEOUT_S = 1800

# Versions measured to work together here (Python 3.11, CPU). onnx2tf pins the TF/onnx stack itself;
# pinning everything that matters keeps conversions reproducible across machines.
PINS = (
    "onnx2tf==1.29.24",
    "tensorflow==2.19.0",
    "tf_keras==2.19.0",
    "onnx==1.19.1",
    "onnxruntime==1.23.0",
    "onnxsim==0.4.36",
    "onnx_graphsurgeon==0.5.8",
    "sng4onnx==2.0.1",
    "simple_onnx_processing_tools==1.1.32",
    "numpy==1.26.4",
    "protobuf==4.25.5",
    "h5py==3.11.0",
    "ml_dtypes==0.5.1",
    "psutil==5.9.5",
    "ai-edge-litert==2.1.0",
)
STAMP = "rfdetr-converter.json"
CREATING = ".rfdetr-creating"  # present only while we build the env: safe to delete if found later


class ConverterEnvError(RuntimeError):
    """The converter environment could not be created or is unusable."""


def _pins_digest() -> str:
    return hashlib.sha256("\n".join(PINS).encode()).hexdigest()[:12]


def default_env_dir() -> Path:
    """``$RFDETR_CONVERTER_VENV`` if set, else a pin-specific folder in the user cache."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "rfdetr_core" / f"onnx2tf-venv-{_pins_digest()}"


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def is_ready(env_dir: Path) -> bool:
    """True when the venv exists and its stamp records exactly the current pins."""
    stamp = env_dir / STAMP
    if not stamp.is_file() or not env_python(env_dir).exists():
        return False
    try:
        return json.loads(stamp.read_text()).get("pins") == list(PINS)
    except (OSError, json.JSONDecodeError):
        return False


def _base_python() -> str:
    """An interpreter that can run ``-m venv`` (a venv's python can, but its base is more direct)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


def _run(cmd: list[str], what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConverterEnvError(f"Could not {what}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ConverterEnvError(
            f"Could not {what} (exit {proc.returncode}). TFLite export needs a private environment with "
            f"onnx2tf; pip must reach PyPI (or a mirror) once. Set {ENV_VAR} to reuse an existing one.\n{tail}"
        )


def ensure_env(env_dir: Path | None = None, *, progress=print) -> Path:
    """Return a ready converter venv, creating it on first use (under a file lock; ~1 min here)."""
    env_dir = Path(env_dir) if env_dir else default_env_dir()
    if is_ready(env_dir):
        return env_dir
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = env_dir.parent / f".{env_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be creating the same env
        if is_ready(env_dir):
            return env_dir
        if env_dir.exists() and any(env_dir.iterdir()):
            if (env_dir / CREATING).exists():
                shutil.rmtree(env_dir)  # a half-built env from an interrupted attempt of ours
            elif (env_dir / "bin" / "onnx2tf").exists():
                return env_dir  # an environment the user prepared and pointed us at: use it as is
            else:
                raise ConverterEnvError(
                    f"{env_dir} exists but is not a converter environment (no bin/onnx2tf); "
                    f"point {ENV_VAR} at an empty or missing folder to create one there."
                )
        env_dir.mkdir(parents=True, exist_ok=True)
        (env_dir / CREATING).touch()
        start = time.perf_counter()
        progress(f"Creating the TFLite converter environment in {env_dir} (first use, about a minute)…")
        _run([_base_python(), "-m", "venv", "--clear", str(env_dir)], "create a virtual environment", 300)
        (env_dir / CREATING).touch()  # --clear emptied the folder
        pip = [str(env_python(env_dir)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        _run([*pip, *PINS], "install onnx2tf and TensorFlow into the converter environment", PIP_TIMEOUT_S)
        seconds = round(time.perf_counter() - start, 1)
        (env_dir / STAMP).write_text(json.dumps({"pins": list(PINS), "created_s": seconds}, indent=1))
        (env_dir / CREATING).unlink()
        progress(f"Converter environment ready in {seconds} s")
    return env_dir
