"""The devices a user can pick: a clear refusal of a device this machine lacks, and a GPU that runs
out of memory giving the same result one window at a time instead of a crash (the hub's choices:
test_scene_state.py)."""

from __future__ import annotations

import os
import weakref

import numpy as np
import pytest
import torch

from deepdiag.devices import available_memory_bytes, pick_device
from deepdiag.errors import DeepDiagError
from deepdiag.segmentation import inference
from deepdiag.segmentation.inference import WINDOWS_PER_BATCH, predict_probabilities

PATCH = (16, 16, 16)


class _SmallGpu(torch.nn.Module):
    """A network on a device that holds at most ``capacity`` windows at a time; it records
    whether the activations of its failed batches were still held when it ran again."""

    def __init__(self, capacity: int, error: type[Exception] = torch.OutOfMemoryError) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.capacity, self.error = capacity, error
        self.batches: list[int] = []
        self.failed: list[weakref.ref] = []
        self.failed_still_held: list[bool] = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch.shape[0])
        self.failed_still_held += [ref() is not None for ref in self.failed]
        activation = self.conv(batch)
        if batch.shape[0] > self.capacity:
            self.failed.append(weakref.ref(activation))
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return activation


def _image() -> np.ndarray:
    return np.random.default_rng(0).random((40, 40, 40), dtype=np.float32)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_asking_for_an_apple_gpu_where_there_is_none_names_the_device_and_the_way_out():
    with pytest.raises(DeepDiagError, match=r"--device mps was asked for.*no Apple GPU.*or use --device cpu"):
        pick_device("mps")


def test_running_out_of_gpu_memory_goes_on_one_window_at_a_time_with_the_same_result():
    image, warnings = _image(), []
    roomy = predict_probabilities(_SmallGpu(capacity=WINDOWS_PER_BATCH), image, PATCH, torch.device("cpu"))
    small = _SmallGpu(capacity=1)
    tight = predict_probabilities(small, image, PATCH, torch.device("cpu"), on_warning=warnings.append)
    assert small.batches[0] == WINDOWS_PER_BATCH and set(small.batches[1:]) == {1}
    np.testing.assert_allclose(tight, roomy, atol=1e-5)
    assert len(warnings) == 1 and "memory ran out" in warnings[0] and "one at a time" in warnings[0]
    assert not any(small.failed_still_held), "the failed batch's memory is free before the retry"


def test_an_apple_gpu_running_out_of_memory_goes_on_one_window_at_a_time_too():
    # MPS reports it as a RuntimeError "MPS backend out of memory", not as torch.OutOfMemoryError
    small = _SmallGpu(capacity=1, error=lambda message: RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    predict_probabilities(small, _image(), PATCH, torch.device("cpu"))
    assert set(small.batches[1:]) == {1}


def test_other_runtime_errors_are_not_taken_for_a_full_gpu():
    broken = _SmallGpu(capacity=1, error=lambda message: RuntimeError("expected scalar type Float"))
    with pytest.raises(RuntimeError, match="expected scalar type"):
        predict_probabilities(broken, _image(), PATCH, torch.device("cpu"))
    assert broken.batches == [WINDOWS_PER_BATCH], "no retry"


def test_a_gpu_too_small_for_one_window_hands_the_error_on_to_the_batch_after_freeing_its_cache(monkeypatch):
    released = []
    monkeypatch.setattr(inference, "release_cached_memory", released.append)
    with pytest.raises(torch.OutOfMemoryError):  # the batch names the scan: test_hostile_input.py
        predict_probabilities(_SmallGpu(capacity=0), _image(), PATCH, torch.device("cpu"))
    assert len(released) == 1, "the cached memory is handed back before the second try"


def test_an_apple_gpu_that_stays_out_of_memory_is_the_batchs_gpu_row_not_an_internal_error():
    from deepdiag.batch import run_batch
    from deepdiag.progress import ProgressReporter

    def process_one(path, progress):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 9.00 GB)")

    results = []
    reporter = ProgressReporter("none")
    reporter.result = results.append
    assert not run_batch(["big.nrrd"], process_one, reporter, {})
    assert "big.nrrd: the GPU ran out of memory" in results[0]["failed"][0]["error"]


def test_memory_the_kernel_can_reclaim_counts_as_available(tmp_path):
    """A machine that has just written many scans holds them in its page cache: free pages were
    1.1 GB of 18 GB available, and a 3.5 GB segmentation was refused."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1100000 kB\nMemAvailable:   18000000 kB\n")
    assert available_memory_bytes(str(meminfo)) == 18_000_000 * 1024
    if os.path.isfile("/proc/meminfo"):
        assert available_memory_bytes() >= os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.9
