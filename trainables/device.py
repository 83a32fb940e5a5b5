"""Which device a trial trains on: the GPU Ray assigned it, or the CPU — never silently
the wrong one.

Ray gives a trial that asked for GPUs their ids (``ray.get_gpu_ids()``) and sets
``CUDA_VISIBLE_DEVICES`` to them, so inside the trial the first assigned GPU is
``cuda:0``; trials packed onto one GPU (``--gpus-per-trial 0.25``) all see the same one.
A trial that was given a GPU while torch has no CUDA (a CPU build of torch, no driver)
refuses to start: training 150 trials on the CPU of a GPU node because of a wrong wheel
is the failure this module exists to stop. ``allow_cpu_for_gpu_trials`` trains on the CPU
anyway — for tests of GPU packing on logical GPUs (``ray start --num-gpus``), whose
nodes have no real device.

Ray-free: the trainable passes in what Ray assigned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


class DeviceError(RuntimeError):
    """A trial was given a GPU it cannot use."""


@dataclass(frozen=True)
class TrialDevice:
    device: torch.device
    gpu_ids: tuple[str, ...]  # what Ray assigned (empty: no GPU asked for)
    description: str  # for the run: "cuda:0 (NVIDIA H200)", "cpu", "cpu (GPU 0 assigned, ...)"


def trial_device(gpu_ids, allow_cpu_for_gpu_trials: bool = False, cuda_available: bool | None = None) -> TrialDevice:
    """The device of a trial Ray gave ``gpu_ids``; raises ``DeviceError`` when it was given
    a GPU and torch cannot use one (unless ``allow_cpu_for_gpu_trials``)."""
    ids = tuple(str(i) for i in gpu_ids)
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if not ids:
        return TrialDevice(torch.device("cpu"), ids, "cpu")
    if cuda:
        name = torch.cuda.get_device_name(0) if cuda_available is None else "GPU"
        return TrialDevice(torch.device("cuda", 0), ids, f"cuda:0 ({name}; Ray GPU {','.join(ids)})")
    why = (f"this trial was given GPU {','.join(ids)} by Ray (CUDA_VISIBLE_DEVICES="
           f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}) but torch {torch.__version__} has no CUDA "
           f"({'a CPU build of torch' if torch.version.cuda is None else 'no usable CUDA device or driver'})")
    if not allow_cpu_for_gpu_trials:
        raise DeviceError(f"{why}: install the CUDA build of torch on this node, or run with "
                          f"--gpus-per-trial 0 (or, to train on the CPU anyway, --allow-cpu-for-gpu-trials)")
    return TrialDevice(torch.device("cpu"), ids, f"cpu ({why}; --allow-cpu-for-gpu-trials)")
