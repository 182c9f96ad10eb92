"""Reduced precision for inference, where the hardware runs it natively and the results hold.

On CUDA the networks run under float16 autocast (the U-Net did before; the detector's backbone
and the candidate filters now do too); on CPUs with native bfloat16 (AVX512-BF16 or AMX: recent Xeon and EPYC) under
bfloat16 autocast, which makes the segmentation U-Net about 2.4x and the detector's backbone
about 1.6x faster on 2 cores. On the two real chest CTs and a default phantom the segmentation
agrees with float32 to a nodule Dice of 0.999 with the same components, and the detector gives
the same findings (docs/performance.md). Autocast runs the convolutions and the layers between
them in reduced precision; the detector's boxes and scores, and every probability handed on,
are float32. Everything under ``torch.inference_mode`` takes part: segmentation and detection,
and also the validation that picks a fine-tuned model's epoch and the training scripts' mining of
hard negatives; the training steps themselves do not. ``DEEPDIAG_PRECISION=float32`` turns it off
(on the CPU, the labels of the release before it, identical on the three scans measured).
"""

from __future__ import annotations

import functools
import os
from contextlib import AbstractContextManager, nullcontext

import torch

from .errors import DeepDiagError

PRECISION_VARIABLE = "DEEPDIAG_PRECISION"
_CHOICES = ("auto", "float32")


def reduced_precision_dtype(device_type: str) -> torch.dtype | None:
    """The autocast type inference uses on ``device_type`` ("cpu", "cuda"), or None for float32."""
    choice = os.environ.get(PRECISION_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise DeepDiagError(f"{PRECISION_VARIABLE} must be one of {', '.join(_CHOICES)}, got {choice!r}")
    if choice == "float32":
        return None
    if device_type == "cuda":
        return torch.float16
    if device_type == "cpu" and cpu_has_native_bfloat16():
        return torch.bfloat16
    return None


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 itself (AVX512-BF16 or AMX) and oneDNN uses it.
    oneDNN alone accepts bfloat16 on any AVX-512 CPU (Skylake to Ice Lake Xeons too), but
    emulates it there, slower than float32."""
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN or without the queries
        return False


def reduced_precision(device: torch.device) -> AbstractContextManager:
    """Autocast for a network's forward pass at inference (``torch.inference_mode``); a no-op in
    training steps, so that they compute as before."""
    dtype = reduced_precision_dtype(device.type) if torch.is_inference_mode_enabled() else None
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
