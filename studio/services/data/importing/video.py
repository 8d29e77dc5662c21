"""A video file imported as frames: every N seconds or every N frames, near-duplicates skipped.

Why frames and not "a video": everything downstream (labeling, pre-labeling, training) works on
images. The frames are unlabeled images whose name carries the frame time (``clip_t0012.500s.jpg``;
the times are also in the stored report), so a user can find the moment in the video again.

- Decoding uses PyAV (installed with FiftyOne). Each frame is decoded once; only picked frames are
  converted to RGB and saved (JPEG, quality 95) to a temporary folder, then the normal writer checks,
  hashes and stores them in one transaction, so a cancelled or failed import leaves nothing behind.
- Near-identical consecutive frames (a parked camera, a paused scene) add labeling work and nothing
  else: a picked frame whose 64x64 grey thumbnail differs from the last *kept* frame by less than
  ``duplicate_threshold`` (mean absolute difference as a fraction of full scale) is skipped.
- ``cancel()`` is polled between frames and during copying; a cancel raises ``ImportAborted`` with
  the project unchanged. ``progress`` gets 0..0.5 for decoding, 0.5..1 for storing.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.services.data.importing import limits
from studio.services.data.importing.formats.common import RawDataset, RawImage, abort
from studio.services.data.importing.report import ImportAborted, ImportReport
from studio.services.data.importing.writer import Progress, write_dataset
from studio.store import ProjectStore
from studio.text import clip, quote

THUMB = 64
DEFAULT_THRESHOLD = 0.02  # 2 % mean difference: sensor noise and re-encoding stay under ~0.5 %
CANCELLED = "import cancelled; nothing was imported"


@dataclass(frozen=True)
class VideoOptions:
    """What the import panel asks: ``every`` ``unit`` ("seconds" or "frames"), and the threshold."""

    every: float = 1.0
    unit: str = "seconds"
    duplicate_threshold: float = DEFAULT_THRESHOLD
    max_frames: int = limits.MAX_VIDEO_FRAMES

    def describe(self) -> dict[str, str]:
        """The settings as the report shows them (the threshold is shown, as the panel promises)."""
        every = f"{self.every:g} {self.unit}" if self.every != 1 else f"1 {self.unit.rstrip('s')}"
        return {
            "one frame every": every,
            "near-duplicates skipped below": f"{self.duplicate_threshold:.1%} mean difference",
        }

    def check(self) -> str | None:
        if self.unit not in {"seconds", "frames"}:
            return f"unit must be 'seconds' or 'frames', not {quote(self.unit)}"
        if not self.every > 0 or (self.unit == "frames" and self.every != int(self.every)):
            return "'every' must be a positive number of seconds or a whole number of frames"
        if not 0 <= self.duplicate_threshold < 1:
            return "the duplicate threshold must be between 0 and 1"
        return None


class CancelFlags:
    """One cancel flag per key (a project slug): the Cancel button sets it, the running import polls
    it. Thread-safe; a finished import removes its flag."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, key: str) -> Callable[[], bool]:
        with self._lock:
            flag = self._flags[key] = threading.Event()
        return flag.is_set

    def cancel(self, key: str) -> bool:
        """Ask the import running under ``key`` to stop; False when none is running."""
        with self._lock:
            flag = self._flags.get(key)
        if flag is not None:
            flag.set()
        return flag is not None

    def finish(self, key: str) -> None:
        with self._lock:
            self._flags.pop(key, None)


CANCELS = CancelFlags()


def _never() -> bool:
    return False


def import_video(
    store: ProjectStore,
    video: Path,
    options: VideoOptions | None = None,
    *,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ImportReport:
    """Import frames of ``video`` as unlabeled images; raises ``ImportAborted`` (project unchanged)."""
    options, cancel = options or VideoOptions(), cancel or _never
    progress = progress or (lambda _f, _m: None)
    video = Path(video)
    report = ImportReport(source=str(video), format="video")
    bad = options.check()
    if bad:
        raise abort(report, video.name, bad)
    with tempfile.TemporaryDirectory(prefix="studio-video-") as tmp:
        raw = extract_frames(video, Path(tmp), options, report, progress=progress, cancel=cancel)

        def store_progress(f: float, m: str) -> None:
            if cancel():
                raise abort(report, video.name, CANCELLED)
            progress(0.5 + f / 2, m)

        report.settings = options.describe()

        try:
            write_dataset(store, raw, report, store_progress)
        except ImportAborted:
            raise
        except Exception as e:  # the writer's own errors are already ImportAborted
            raise abort(report, video.name, f"import failed unexpectedly ({clip(str(e), 200)})") from None
    return report


def extract_frames(
    video: Path,
    out_dir: Path,
    options: VideoOptions,
    report: ImportReport,
    *,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> RawDataset:
    """Decode ``video``, save the picked, non-duplicate frames under ``out_dir`` as JPEGs."""
    import av

    progress, cancel = progress or (lambda _f, _m: None), cancel or _never
    try:
        container = av.open(str(video), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise abort(
            report, video.name, f"{quote(video.name)} is not a video PyAV can read ({clip(str(e), 160)})"
        ) from None
    with container:
        if not container.streams.video:
            raise abort(report, video.name, f"{quote(video.name)} has no video stream")
        stream = container.streams.video[0]
        _check_stream(stream, video, report)
        duration = _duration(container, stream)
        ds = RawDataset(format="video")
        picker = _Picker(options, float(stream.average_rate or stream.guessed_rate or 0) or 25.0)
        try:
            _decode(container, stream, picker, video, out_dir, ds, report, progress, cancel, duration)
        except av.FFmpegError as e:
            report.add(
                video.name, f"decoding stopped early ({clip(str(e), 160)}); the frames read so far are kept"
            )
    report.count("frames_kept", len(ds.images))
    report.frame_times = {im.name: t for im, t in zip(ds.images, picker.times, strict=True)}
    if not ds.images:
        raise abort(report, video.name, f"no frames could be read from {quote(video.name)}")
    return ds


def _check_stream(stream: object, video: Path, report: ImportReport) -> None:
    w, h = stream.codec_context.width, stream.codec_context.height
    if w * h > limits.MAX_PIXELS:
        raise abort(report, video.name, f"video frames are {w}x{h} (limit {limits.MAX_PIXELS:,} pixels)")


def _duration(container: object, stream: object) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return float(container.duration or 0) / 1_000_000


class _Picker:
    """Which decoded frames to keep: the sampling rule, then the near-duplicate rule."""

    def __init__(self, options: VideoOptions, fps: float) -> None:
        self.options, self.fps = options, fps
        self.next_time = 0.0
        self.last: np.ndarray | None = None
        self.times: list[float] = []

    def due(self, index: int, t: float) -> bool:
        if self.options.unit == "frames":
            return index % int(self.options.every) == 0
        if t + 0.5 / self.fps >= self.next_time:  # half a frame of slack for rounded timestamps
            self.next_time += self.options.every * max(1, int((t - self.next_time) / self.options.every) + 1)
            return True
        return False

    def duplicate(self, thumb: np.ndarray) -> bool:
        if (
            self.last is not None
            and float(np.abs(thumb - self.last).mean()) / 255 < self.options.duplicate_threshold
        ):
            return True
        self.last = thumb
        return False


def _decode(
    container,
    stream,
    picker: _Picker,
    video: Path,
    out_dir: Path,
    ds: RawDataset,
    report: ImportReport,
    progress: Progress,
    cancel: Callable[[], bool],
    duration: float,
) -> None:
    step = max(1, int(picker.fps))
    for index, frame in enumerate(container.decode(stream)):
        if cancel():
            raise abort(report, video.name, CANCELLED)
        t = float(frame.time) if frame.time is not None else index / picker.fps
        if index % step == 0:
            progress(min(0.5, 0.5 * t / duration) if duration else 0.0, f"reading frames ({t:.0f} s)")
        if not picker.due(index, t):
            continue
        image = frame.to_image()
        thumb = np.asarray(image.convert("L").resize((THUMB, THUMB)), dtype=np.float32)
        if picker.duplicate(thumb):
            report.count("frames_skipped_as_duplicates")
            continue
        if len(ds.images) >= picker.options.max_frames:
            report.add(
                video.name,
                f"only the first {picker.options.max_frames:,} frames are kept (limit); "
                "choose a longer interval",
                "warning",
            )
            break
        name = f"{video.stem}_t{t:08.3f}s.jpg"
        image.save(out_dir / name, quality=95)
        picker.times.append(round(t, 3))
        ds.images.append(RawImage(out_dir / name, name, None, False, f"{video.name} @ {t:.3f} s"))
