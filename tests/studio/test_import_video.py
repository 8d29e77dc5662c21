"""A video imported as frames: sampling every N seconds / N frames, near-duplicates skipped, frame
times kept, progress, cancel (issue 14). The clip is encoded here with PyAV (mpeg4), nothing shipped."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import func, select

from studio.services.data.importing.importer import ImportAborted, import_dataset
from studio.services.data.importing.video import CANCELS, VideoOptions, import_video
from studio.store import Image, ImportRecord, ProjectStore

FPS, SECONDS, MOVING = 10, 10, 5  # shapes move for the first 5 s, then the scene is still


def make_clip(path: Path) -> Path:
    """160x120, 10 fps, 10 s: a square sliding right and a bar sliding down until t = 5 s."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for i in range(FPS * SECONDS):
            t = min(i / FPS, MOVING)
            img = np.full((120, 160, 3), 30, np.uint8)
            x = int(10 + 20 * t)
            img[40:80, x : x + 40] = (240, 200, 40)
            y = int(5 + 12 * t)
            img[y : y + 20, 120:150] = (40, 90, 250)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("video") / "street cam.mp4")


@pytest.fixture()
def store(tmp_path: Path):
    st = ProjectStore.create(tmp_path / "proj", "P")
    yield st
    st.close()


def _names(store: ProjectStore) -> list[str]:
    with store.session(readonly=True) as s:
        return sorted(s.scalars(select(Image.original_name)))


def test_every_second_keeps_moving_frames_and_skips_the_still_ones(store: ProjectStore, clip: Path) -> None:
    seen: list[float] = []
    report = import_video(
        store, clip, VideoOptions(every=1, unit="seconds"), progress=lambda f, m: seen.append(f)
    )
    # t = 0..9 s sampled; 0..5 differ, 6..9 are the same still scene as 5
    assert report.counts["frames_kept"] == 6 and report.counts["frames_skipped_as_duplicates"] == 4
    assert report.counts["images_imported"] == 6 and report.format == "video"
    assert _names(store) == [f"street cam_t{t:08.3f}s.jpg" for t in range(6)]
    with store.session(readonly=True) as s:
        assert set(s.scalars(select(Image.status))) == {"unlabeled"}
        assert set(s.scalars(select(Image.width))) == {160}
        stored = s.scalars(select(ImportRecord.report)).one()
    assert stored["frame_times"] == {f"street cam_t{t:08.3f}s.jpg": float(t) for t in range(6)}
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_every_n_frames_and_threshold(store: ProjectStore, clip: Path, tmp_path: Path) -> None:
    report = import_video(store, clip, VideoOptions(every=5, unit="frames"))
    # frames 0, 5, …, 95: ten in the first 5 s, frame 50 (t = 5 s) and nine stills after it
    assert report.counts["frames_kept"] == 11 and report.counts["frames_skipped_as_duplicates"] == 9
    with ProjectStore.create(tmp_path / "p0", "p0") as other:
        all_kept = import_video(other, clip, VideoOptions(every=5, unit="frames", duplicate_threshold=0))
        assert all_kept.counts["frames_kept"] == 20  # threshold 0 keeps every sampled frame


def test_cancel_leaves_the_project_unchanged(store: ProjectStore, clip: Path) -> None:
    calls = iter(range(1000))
    with pytest.raises(ImportAborted, match="import cancelled; nothing was imported"):
        import_video(store, clip, cancel=lambda: next(calls) >= 30)
    cancel = CANCELS.start("proj")
    assert CANCELS.cancel("proj") and cancel()
    with pytest.raises(ImportAborted, match="cancelled"):
        import_video(store, clip, cancel=cancel)
    CANCELS.finish("proj")
    assert not CANCELS.cancel("proj")
    with store.session(readonly=True) as s:
        assert s.scalar(select(func.count(Image.id))) == 0
    assert not any(store.images_dir.iterdir())


def test_import_dataset_takes_a_video_file_and_explains_a_video_folder(
    store: ProjectStore, clip: Path, tmp_path: Path
) -> None:
    report = import_dataset(store, clip)
    assert report.counts["frames_kept"] == 6
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip.read_bytes())
    with pytest.raises(
        ImportAborted, match=r"found 1 video file\(s\) but no images: import a video file on its own"
    ):
        import_dataset(store, folder)
    (folder / "a.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(ImportAborted, match="is not a video PyAV can read"):
        import_dataset(store, folder / "a.mp4")
    with pytest.raises(ImportAborted, match="'every' must be a positive"):
        import_video(store, clip, VideoOptions(every=0))


def test_options_and_cancel_through_import_dataset(store: ProjectStore, clip: Path, tmp_path: Path) -> None:
    report = import_dataset(store, clip, video=VideoOptions(every=2, unit="seconds"))
    assert report.counts["frames_kept"] == 4  # t = 0, 2, 4, 6 (the still scene, moved since 4); 8 = 6
    assert report.settings == {
        "one frame every": "2 seconds",
        "near-duplicates skipped below": "2.0% mean difference",
    }
    assert "Settings: one frame every 2 seconds" in report.to_markdown()
    # cancel works for any import, not only videos: the project keeps what it had
    from tests.support.datagen import loose_images

    loose_images(tmp_path / "pics", n=3)
    with pytest.raises(ImportAborted, match="cancelled"):
        import_dataset(store, tmp_path / "pics", cancel=lambda: True)
    assert len(_names(store)) == 4  # the frames; none of the three pictures
