import numpy as np
import pytest

from storage.preprocess.temporal import resample_index, resample_indices, stored_fps
from storage.sampling import length_name, parse_length, uniform_indices


@pytest.mark.parametrize("fps,step", [(200, 2), (300, 3), (500, 5)])
def test_multiples_of_100_keep_every_kth_frame(fps, step):
    n = fps // 2  # half a second
    idx = resample_indices(n, fps)
    assert np.array_equal(idx, np.arange(0, n, step))
    assert len(idx) == 50  # 0.5 s at 100 fps
    assert stored_fps(fps) == 100.0


def test_non_multiple_takes_nearest_frame_in_time():
    idx = resample_indices(125, 250.0)  # 0.5 s at 250 fps
    times = np.arange(len(idx)) / 100.0
    assert np.array_equal(idx, np.rint(times * 250).astype(int))
    assert len(idx) == 50


@pytest.mark.parametrize("fps", [30, 60, 100])
def test_nothing_is_upsampled(fps):
    assert np.array_equal(resample_indices(17, fps), np.arange(17))
    assert stored_fps(fps) == fps


def test_annotated_frames_follow_resampling():
    assert resample_index(0, 100, 200) == 0
    assert resample_index(40, 100, 200) == 20
    assert resample_index(41, 100, 200) in (20, 21)
    assert resample_index(99, 100, 500) == 19  # kept source frames 0, 5, ..., 95: 95 is nearest
    assert resample_index(7, 10, 30) == 7


def test_uniform_indices_include_first_and_last_and_are_even():
    for t in (20, 33, 61):
        for n in (4, 8, 12, 16):
            idx = uniform_indices(t, n)
            assert len(idx) == n and idx[0] == 0 and idx[-1] == t - 1
            gaps = np.diff(idx)
            assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1
    assert np.array_equal(uniform_indices(9, None), np.arange(9))
    assert list(uniform_indices(10, 4)) == [0, 3, 6, 9]


def test_length_parsing():
    assert parse_length("all") is None and parse_length("8") == 8 and parse_length(12) == 12
    assert length_name(None) == "all" and length_name(4) == "4"
    with pytest.raises(ValueError, match="length"):
        parse_length("eight")
    with pytest.raises(ValueError, match="length"):
        parse_length(1)
