"""The devices a user can pick: a clear refusal of a device this machine lacks, and a GPU that runs
out of memory giving the same result one window at a time instead of a crash (the hub's choices:
test_scene_state.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepdiag.errors import DeepDiagError
from deepdiag.segmentation import inference
from deepdiag.segmentation.inference import WINDOWS_PER_BATCH, pick_device, predict_probabilities

PATCH = (16, 16, 16)


class _SmallGpu(torch.nn.Module):
    """A network on a device that holds at most ``capacity`` windows at a time."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)
        self.capacity = capacity
        self.batches: list[int] = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch.shape[0])
        if batch.shape[0] > self.capacity:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(batch)


def _image() -> np.ndarray:
    return np.random.default_rng(0).random((40, 40, 40), dtype=np.float32)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_asking_for_an_apple_gpu_where_there_is_none_names_the_device_and_the_way_out():
    with pytest.raises(DeepDiagError, match=r"--device mps was asked for.*no Apple GPU.*or use --device cpu"):
        pick_device("mps")


def test_auto_picks_cuda_only_when_present_and_never_mps():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_running_out_of_gpu_memory_goes_on_one_window_at_a_time_with_the_same_result():
    image, warnings = _image(), []
    roomy = predict_probabilities(_SmallGpu(capacity=WINDOWS_PER_BATCH), image, PATCH, torch.device("cpu"))
    small = _SmallGpu(capacity=1)
    tight = predict_probabilities(small, image, PATCH, torch.device("cpu"), on_warning=warnings.append)
    assert small.batches[0] == WINDOWS_PER_BATCH and set(small.batches[1:]) == {1}
    np.testing.assert_allclose(tight, roomy, atol=1e-5)
    assert len(warnings) == 1 and "memory ran out" in warnings[0] and "one at a time" in warnings[0]


def test_a_gpu_too_small_for_one_window_hands_the_error_on_to_the_batch_after_freeing_its_cache(monkeypatch):
    released = []
    monkeypatch.setattr(inference, "_release_cached_memory", released.append)
    with pytest.raises(torch.OutOfMemoryError):  # the batch names the scan: test_hostile_input.py
        predict_probabilities(_SmallGpu(capacity=0), _image(), PATCH, torch.device("cpu"))
    assert len(released) == 1, "the cached memory is handed back before the second try"
