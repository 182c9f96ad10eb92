"""Sliding-window inference with MONAI: Gaussian blending, reduced precision where native (:mod:`..precision`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from ..precision import reduced_precision

_OVERLAP = 0.25


def pick_device(device: str) -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import DeepDiagError

        if torch.version.cuda:  # a CUDA build of torch that finds no usable GPU: no GPU, or a driver too old for it
            raise DeepDiagError(
                f"--device cuda was asked for, but this torch (built for CUDA {torch.version.cuda}) finds no usable "
                "GPU: check the NVIDIA driver (nvidia-smi), install the torch build that fits it, or use --device cpu"
            )
        raise DeepDiagError(
            "--device cuda was asked for, but this torch is a CPU-only build: install a CUDA build, or use --device cpu"
        )
    return torch.device(device)


def predict_probabilities(
    network: torch.nn.Module,
    image: np.ndarray,
    patch_size: tuple[int, int, int],
    device: torch.device,
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Class probabilities (softmax) of shape ``(classes, *image.shape)`` for a normalized image."""
    windows = int(
        np.prod(
            [
                max(1, int(np.ceil((n - p) / (p * (1 - _OVERLAP)))) + 1) if n > p else 1
                for n, p in zip(image.shape, patch_size)
            ]
        )
    )
    done = [0]

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with reduced_precision(device):
            logits = network(batch)
        done[0] += batch.shape[0]
        if on_progress:
            on_progress(min(done[0] / windows, 1.0))
        return logits.float()

    tensor = torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device)
    with torch.inference_mode():
        logits = sliding_window_inference(
            tensor,
            roi_size=patch_size,
            sw_batch_size=4,
            predictor=predictor,
            overlap=_OVERLAP,
            mode="gaussian",
            sw_device=device,
            device=torch.device("cpu"),
        )
        return torch.softmax(logits[0], dim=0).numpy()
