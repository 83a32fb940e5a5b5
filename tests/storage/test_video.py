import threading

import cv2
import numpy as np
import pytest

from storage.sources import video
from storage.sources.frames import ClipError
from storage.sources.synthetic.videos import drop_last_frames, truncate, write_mp4, zero_last_frames
from storage.sources.video import probe_video, read_video

MAX_MEAN_ABS_ERROR = 4.5  # mp4v at OpenCV's default bit rate: ~2-3 grey levels, ~2 of them a dark bias


def _clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth texture drifting by a pixel per frame, [t, h, w] uint8."""
    rng = np.random.default_rng(seed)
    texture = cv2.resize(rng.uniform(30, 225, (8, 8)).astype(np.float32), (w + t, h + t),
                         interpolation=cv2.INTER_CUBIC)
    return np.stack([np.clip(texture[k:k + h, k:k + w], 0, 255) for k in range(t)]).astype(np.uint8)


@pytest.mark.parametrize("faststart", [True, False])
@pytest.mark.parametrize("h, w", [(32, 48), (40, 64)])  # width 48: decord's padded-row trap
def test_write_mp4_round_trip(tmp_path, faststart, h, w):
    frames = _clip(30, h, w)
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=200, faststart=faststart)
    data = path.read_bytes()
    assert (data.find(b"moov") < data.find(b"mdat")) == faststart
    assert probe_video(path) == video.VideoInfo(frame_count=30, fps=200.0, width=w, height=h)
    back = read_video(path, range(30))
    assert back.shape == frames.shape and back.dtype == np.uint8
    error = np.abs(back.astype(int) - frames)
    assert error.mean() < MAX_MEAN_ABS_ERROR
    # each decoded frame is nearest to its own source frame
    dist = np.abs(back[:, None].astype(int) - frames[None]).mean(axis=(2, 3))
    assert np.array_equal(dist.argmin(axis=1), np.arange(30))


def test_read_video_returns_requested_frames_in_order(tmp_path):
    path = write_mp4(_clip(24, 32, 32), tmp_path / "clip.mp4", fps=30)
    every = read_video(path, range(24))
    wanted = [17, 3, 3, 23, 0]
    assert np.array_equal(read_video(path, wanted), every[wanted])
    assert np.array_equal(read_video(path, np.array([5, 6])), every[5:7])
    assert read_video(path, []).shape == (0, 32, 32)


def test_rgb_and_gray(tmp_path):
    frames = np.zeros((6, 32, 64, 3), np.uint8)
    frames[:, :, :32] = (200, 40, 40)  # red left half, blue right half
    frames[:, :, 32:] = (30, 60, 190)
    path = write_mp4(frames, tmp_path / "rgb.mp4", fps=25)
    rgb = read_video(path, [0, 5], color="rgb")
    assert rgb.shape == (2, 32, 64, 3)
    assert np.abs(rgb[:, 4:-4, 4:28].mean(axis=(0, 1, 2)) - (200, 40, 40)).max() < 6
    assert np.abs(rgb[:, 4:-4, 36:-4].mean(axis=(0, 1, 2)) - (30, 60, 190)).max() < 6
    gray = read_video(path, [0, 5])
    assert np.array_equal(gray, np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]))


@pytest.mark.parametrize("faststart", [True, False])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_mp4_names_file_and_reason(tmp_path, faststart, keep):
    path = truncate(write_mp4(_clip(30, 32, 32), tmp_path / "cut.mp4", fps=100, faststart=faststart), keep)
    reason = r"cut\.mp4: not a readable video \(truncated: its '(mdat|moov)' atom needs \d+ bytes"
    with pytest.raises(ClipError, match=reason):
        read_video(path, [0])


def test_container_claiming_frames_it_does_not_hold(tmp_path):
    # a well-formed file whose index lists 5 frames more than its media data holds:
    # decord opens it and quietly reports 35 frames
    path = drop_last_frames(write_mp4(_clip(40, 32, 32), tmp_path / "short.mp4", fps=100), 5)
    with pytest.raises(ClipError, match=r"short\.mp4: the container claims 40 frames but only 35 decode"):
        probe_video(path)


def test_frames_that_do_not_decode(tmp_path):
    path = zero_last_frames(write_mp4(_clip(40, 32, 32), tmp_path / "zeros.mp4", fps=100), 3)
    with pytest.raises(ClipError, match=r"zeros\.mp4: the container claims 40 frames but not all of them decode"):
        read_video(path, [39])


def test_unreadable_files(tmp_path):
    with pytest.raises(ClipError, match=r"gone\.mp4: missing"):
        read_video(tmp_path / "gone.mp4", [0])
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ClipError, match=r"empty\.mp4: empty file"):
        probe_video(tmp_path / "empty.mp4")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ClipError, match=r"noise\.mp4: not a readable video \(FFmpeg cannot open it\)"):
        read_video(tmp_path / "noise.mp4", [0])


def test_frames_outside_the_video(tmp_path):
    path = write_mp4(_clip(60, 32, 32), tmp_path / "clip.mp4", fps=100)
    with pytest.raises(ClipError, match=r"clip\.mp4: asks for frame 70, the video has 60 frames"):
        read_video(path, [3, 70, 80])
    with pytest.raises(ClipError, match=r"asks for frame -1, the video has 60 frames"):
        read_video(path, [-1])


def test_stalled_decoding_times_out(tmp_path, monkeypatch):
    release = threading.Event()

    def stuck(path):  # decord's open never returning
        release.wait(30)

    monkeypatch.setattr(video, "_open", stuck)
    try:
        with pytest.raises(ClipError, match=r"stuck\.mp4: decoding stalled for more than 0\.2 s"):
            read_video(tmp_path / "stuck.mp4", [0], timeout_s=0.2)
        # the abandoned decode cannot keep the process alive
        assert all(t.daemon for t in threading.enumerate() if t.name == "decode stuck.mp4")
    finally:
        release.set()


def test_frames_of_unexpected_shape(tmp_path):
    class Reader:
        def __getitem__(self, index):
            return type("Frame", (), {"asnumpy": lambda self: np.zeros((32, 32, 2), np.uint8)})()

    with pytest.raises(ClipError, match=r"odd\.mp4: frame 4 has shape \(32, 32, 2\)"):
        video._frame(Reader(), 4, 10, tmp_path / "odd.mp4")


def test_write_mp4_rejects_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        write_mp4(np.zeros((3, 31, 32), np.uint8), tmp_path / "odd.mp4", fps=30)
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(np.zeros((3, 32, 32), np.float32), tmp_path / "float.mp4", fps=30)
