"""The device a run computes on: picking it and knowing when it ran out of memory; and the memory
the machine has left for a scan.

The names a user can ask for are ``deepdiag.cli.DEVICES`` (there so that the command line parses
without importing torch).
"""

from __future__ import annotations

import os

import torch

from .errors import DeepDiagError
from .precision import reduced_precision_dtype


def pick_device(device: str) -> torch.device:
    """``auto``: CUDA when present, else CPU (Apple's MPS only when asked for: ``mps``). Every
    model command picks its device once, before any scan: a bad ``DEEPDIAG_PRECISION`` is refused
    here, not once per scan."""
    picked = _available_device(device)
    reduced_precision_dtype(picked.type)
    return picked


def _available_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda:  # a CUDA build of torch that finds no usable GPU: no GPU, or a driver too old for it
            raise DeepDiagError(
                f"--device cuda was asked for, but this torch (built for CUDA {torch.version.cuda}) finds no usable "
                "GPU: check the NVIDIA driver (nvidia-smi), install the torch build that fits it, or use --device cpu"
            )
        raise DeepDiagError(
            "--device cuda was asked for, but this torch is a CPU-only build: install a CUDA build, or use --device cpu"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        built = "built with MPS" if torch.backends.mps.is_built() else "built without MPS"
        raise DeepDiagError(
            f"--device mps was asked for, but this torch ({built}) finds no Apple GPU: MPS needs a Mac with Apple "
            "silicon or an AMD GPU, macOS 12.3 or later and a torch built with MPS; or use --device cpu"
        )
    return torch.device(device)


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device running out of memory: CUDA raises torch.OutOfMemoryError,
    Apple's MPS a RuntimeError "MPS backend out of memory"."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error)
    )


def release_cached_memory(device: torch.device) -> None:
    """Hand the memory a GPU's allocator keeps cached back to the device, before a retry."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def available_memory_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """Memory a new allocation can get: on Linux ``MemAvailable``, the free pages and what the
    kernel can reclaim (the page cache of files read or written before). The free pages alone
    (``SC_AVPHYS_PAGES``) were 1.1 GB of 18 GB available on a machine that had just written many
    scans, and a 512x512x300 phantom needing 3.5 GB was refused. Elsewhere the free pages where
    the OS reports them; None (no check) where it does not (Windows)."""
    try:
        with open(meminfo, encoding="ascii") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name (macOS)
        return None
