"""Pretrained-weight registry, cache directory and a download that cannot leave a corrupt file.

Why this shape:
- File names, URLs and MD5 sums are the official RF-DETR ones, so a cache filled by the reference
  package (``RF_HOME``) is reused as is and vice versa.
- Bytes are streamed into a private temporary file next to the destination, hashed on the fly,
  and only ``os.replace``-d into place once the length and checksum are right. An interrupted or
  tampered transfer therefore never leaves a file that a later run would trust.
- Without network the error names the file, where it was expected and the two ways out
  (supply a local ``.pth`` or train from scratch with ``pretrain_weights=None``).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV_VARS = ("RF_HOME", "ROBOFLOW_HOME")
MIRROR_ENV_VAR = "RFDETR_WEIGHTS_MIRROR"
DEFAULT_CACHE_DIR = "~/.roboflow/models"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightAsset:
    """One downloadable checkpoint: the cache file name, its URL and its expected MD5 (if known)."""

    filename: str
    url: str
    md5: str | None = None


_GCS = "https://storage.googleapis.com/rfdetr"
OFFICIAL_WEIGHTS: dict[str, WeightAsset] = {
    asset.filename: asset
    for asset in (
        WeightAsset(
            "rf-detr-nano.pth",
            f"{_GCS}/nano_coco/checkpoint_best_regular.pth",
            "fb6504cce7fbdc783f7a46991f07639f",
        ),
        WeightAsset(
            "rf-detr-small.pth",
            f"{_GCS}/small_coco/checkpoint_best_regular.pth",
            "fb37061c1af7bace359c91b723a8d5c1",
        ),
        WeightAsset(
            "rf-detr-medium.pth",
            f"{_GCS}/medium_coco/checkpoint_best_regular.pth",
            "7223f764a87b863f02eb8d52bf0ce2ee",
        ),
        WeightAsset("rf-detr-base.pth", f"{_GCS}/rf-detr-base-coco.pth", "b4d3ce46099eaed50626ede388caf979"),
        WeightAsset("rf-detr-base-2.pth", f"{_GCS}/rf-detr-base-2.pth", "462f4d9df407ddc1812f42614040e913"),
        WeightAsset(
            "rf-detr-base-o365.pth",
            f"{_GCS}/top-secret-1234/lwdetr_dinov2_small_o365_checkpoint.pth",
            "d93f4921ccbb0f0a2e4364bed290892b",
        ),
        WeightAsset("rf-detr-large.pth", f"{_GCS}/rf-detr-large.pth", "992c8e862aa733a7bb2777e45d49f1a0"),
        WeightAsset(
            "rf-detr-large-2026.pth", f"{_GCS}/rf-detr-large-2026.pth", "5cb72153541cbcb9aa6efa26222acc75"
        ),
    )
}


class WeightsDownloadError(RuntimeError):
    """The weights could not be fetched (offline, HTTP error, interrupted transfer)."""


class WeightsChecksumError(WeightsDownloadError):
    """The downloaded bytes do not match the registered MD5; nothing was written to the cache."""


def model_cache_dir() -> Path:
    """Where pretrained weights live: ``$RF_HOME``, else ``$ROBOFLOW_HOME``, else ``~/.roboflow/models``."""
    raw = next((os.environ[v] for v in CACHE_ENV_VARS if os.environ.get(v)), DEFAULT_CACHE_DIR)
    return Path(raw).expanduser().resolve()


def asset_for(filename: str, registry: dict[str, WeightAsset] | None = None) -> WeightAsset | None:
    """Registry entry for a file name (directory ignored); honours ``$RFDETR_WEIGHTS_MIRROR``.

    A mirror lets air-gapped sites serve the official files from an internal HTTP server under
    the same file names, keeping the official checksums.
    """
    asset = (OFFICIAL_WEIGHTS if registry is None else registry).get(os.path.basename(filename))
    mirror = os.environ.get(MIRROR_ENV_VAR)
    if asset is not None and mirror:
        asset = WeightAsset(asset.filename, f"{mirror.rstrip('/')}/{asset.filename}", asset.md5)
    return asset


def file_md5(path: str | os.PathLike[str]) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_message(asset: WeightAsset, dest: Path, reason: object) -> str:
    return (
        f"Could not download pretrained weights '{asset.filename}' from {asset.url} ({reason}). "
        f"If this machine is offline, either copy the file to {dest} (download it elsewhere from the URL "
        f"above, or point ${CACHE_ENV_VARS[0]} at a folder that holds it), pass "
        f"pretrain_weights='/path/to/your.pth', or pass pretrain_weights=None to train from scratch."
    )


def download(
    asset: WeightAsset,
    dest: str | os.PathLike[str],
    *,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download *asset* to *dest* atomically, verifying length and MD5. Returns the destination path.

    Raises:
        WeightsDownloadError: network failure, HTTP error or a transfer that ended early.
        WeightsChecksumError: the bytes arrived but their MD5 is not the registered one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            md5 = _stream(asset, dest, out, progress=progress, timeout=timeout)
        if asset.md5 and md5 != asset.md5:
            raise WeightsChecksumError(
                f"Checksum mismatch for '{asset.filename}' downloaded from {asset.url}: expected MD5 "
                f"{asset.md5}, got {md5}. The file was discarded; retry, or supply a verified copy at {dest}."
            )
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    logger.info("Saved pretrained weights %s to %s", asset.filename, dest)
    return dest


def _stream(asset: WeightAsset, dest: Path, out, *, progress: bool, timeout: float) -> str:
    """Copy the HTTP body into *out*; returns the MD5 of the bytes written."""
    from tqdm.auto import tqdm

    digest = hashlib.md5()
    received, total = 0, None
    try:
        resp = urllib.request.urlopen(asset.url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise WeightsDownloadError(_offline_message(asset, dest, f"HTTP {exc.code} {exc.reason}")) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsDownloadError(_offline_message(asset, dest, getattr(exc, "reason", exc))) from exc
    try:
        with resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=asset.filename, disable=not progress
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout or IncompleteRead mid-body
        raise WeightsDownloadError(
            f"Download of '{asset.filename}' from {asset.url} was interrupted after {received} bytes "
            f"({exc!r}); nothing was written to {dest}. Retry, or supply the file yourself."
        ) from exc
    if total is not None and received != total:
        raise WeightsDownloadError(
            f"Download of '{asset.filename}' from {asset.url} was interrupted: got {received} of {total} "
            f"bytes; nothing was written to {dest}. Retry, or supply the file yourself."
        )
    return digest.hexdigest()


def resolve_pretrain_weights(
    pretrain_weights: str | os.PathLike[str],
    *,
    registry: dict[str, WeightAsset] | None = None,
    progress: bool = True,
    redownload: bool = False,
) -> Path:
    """Turn a ``pretrain_weights`` value into an existing local file, downloading official files.

    A bare file name (``rf-detr-nano.pth``) means "in the cache directory"; a path with a directory
    is used as is. An existing file is never overwritten unless *redownload*: a user's own
    checkpoint that happens to share an official name is only warned about, not replaced.
    """
    raw = os.fspath(pretrain_weights)
    path = Path(raw).expanduser() if os.path.dirname(raw) else model_cache_dir() / raw
    asset = asset_for(raw, registry)
    if path.is_file() and not redownload:
        if asset is not None and asset.md5 and file_md5(path) != asset.md5:
            logger.warning(
                "%s does not have the MD5 of the official %s; using it as a custom checkpoint "
                "(pass redownload=True to fetch the official file).",
                path,
                asset.filename,
            )
        return path
    if asset is None:
        known = ", ".join(sorted(OFFICIAL_WEIGHTS))
        raise FileNotFoundError(
            f"Pretrained weights not found: {path}. It is neither an existing file nor an official "
            f"checkpoint name ({known}). Pass the path of a .pth file, or pretrain_weights=None."
        )
    return download(asset, path, progress=progress)
