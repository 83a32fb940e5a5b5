"""A trial trains on the device Ray gave it, or refuses with a reason (trainables.device)."""

import pytest
import torch

from trainables.device import DeviceError, trial_device


def test_no_gpu_assigned_trains_on_the_cpu():
    d = trial_device([], cuda_available=False)
    assert d.device == torch.device("cpu") and d.gpu_ids == () and d.description == "cpu"


def test_an_assigned_gpu_is_the_first_visible_cuda_device():
    d = trial_device([3], cuda_available=True)
    assert d.device == torch.device("cuda", 0) and d.gpu_ids == ("3",) and "Ray GPU 3" in d.description


def test_a_gpu_trial_on_cpu_only_torch_refuses_with_the_reason():
    with pytest.raises(DeviceError) as e:
        trial_device(["0"], cuda_available=False)
    msg = str(e.value)
    assert "given GPU 0" in msg and "has no CUDA" in msg and "--allow-cpu-for-gpu-trials" in msg


def test_the_flag_allows_the_cpu_and_says_so():
    d = trial_device(["0"], allow_cpu_for_gpu_trials=True, cuda_available=False)
    assert d.device == torch.device("cpu") and d.gpu_ids == ("0",)
    assert "--allow-cpu-for-gpu-trials" in d.description and "has no CUDA" in d.description
