"""Sliding-window inference with MONAI: Gaussian blending, reduced precision where native (:mod:`..precision`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..devices import out_of_memory, release_cached_memory
from ..precision import reduced_precision

_OVERLAP = 0.25
WINDOWS_PER_BATCH = 4


def window_count(shape: tuple[int, ...], patch_size: tuple[int, ...]) -> int:
    """How many windows MONAI's sliding window places over ``shape`` at this module's overlap."""
    return int(
        np.prod(
            [
                max(1, int(np.ceil((n - p) / (p * (1 - _OVERLAP)))) + 1) if n > p else 1
                for n, p in zip(shape, patch_size)
            ]
        )
    )


def predict_probabilities(
    network: torch.nn.Module,
    image: np.ndarray,
    patch_size: tuple[int, int, int],
    device: torch.device,
    on_progress: Callable[[float], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Class probabilities (softmax) of shape ``(classes, *image.shape)`` for a normalized image.

    Windows go through the network ``WINDOWS_PER_BATCH`` at a time; when the device runs out of
    memory (a small GPU, or one another program shares) they go one at a time instead, with the
    same result, and ``on_warning`` says so. Each window is normalized on its own (instance
    normalization), so a batch of one computes what a batch of four does.
    """
    windows = window_count(image.shape, patch_size)
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device)
    try:
        return _probabilities(
            _sliding_window(network, tensor, patch_size, device, WINDOWS_PER_BATCH, windows, on_progress)
        )
    except RuntimeError as error:  # torch.OutOfMemoryError is one
        if not out_of_memory(error):
            raise
    # retried outside the except block: inside it, the error's traceback would keep the failed
    # batch's tensors (and their device memory) alive during the retry
    release_cached_memory(device)
    if on_warning:
        on_warning(
            f"{device.type.upper()} memory ran out with {WINDOWS_PER_BATCH} windows at a time; went on with one at "
            "a time (the same result, slower)"
        )
    # if even one window does not fit, the error goes on to the batch, which names the scan and the way out
    return _probabilities(_sliding_window(network, tensor, patch_size, device, 1, windows, on_progress))


def _probabilities(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits[0], dim=0).numpy()


def _sliding_window(network, tensor, patch_size, device, per_batch: int, windows: int, on_progress) -> torch.Tensor:
    done = [0]

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with reduced_precision(device):
            logits = network(batch)
        done[0] += batch.shape[0]
        if on_progress:
            on_progress(min(done[0] / windows, 1.0))
        return logits.float()

    with torch.inference_mode():
        return sliding_window_inference(
            tensor,
            roi_size=patch_size,
            sw_batch_size=per_batch,
            predictor=predictor,
            overlap=_OVERLAP,
            mode="gaussian",
            sw_device=device,
            device=torch.device("cpu"),
        )
