"""Save and load model folders. Weights are safetensors, checked against the card's SHA-256
before use, and never unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import DeepDiagError
from .card import CARD_FILE, WEIGHTS_FILE, ModelCard
from .networks import build_network


@dataclass
class LoadedModel:
    card: ModelCard
    network: torch.nn.Module
    folder: Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Read the card, verify the weights' checksum, build the network and load its weights."""
    folder = Path(folder)
    card = ModelCard.read(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise DeepDiagError(f"model {card.full_id} has no {WEIGHTS_FILE}", folder)
    if card.weights_sha256 and sha256_of(weights) != card.weights_sha256:
        raise DeepDiagError(f"model {card.full_id}: the weights' SHA-256 does not match its card (altered or corrupt file)", weights)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise DeepDiagError(f"model {card.full_id}: cannot read the weights ({error})", weights) from None
    network = build_network(card)
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError:
        raise DeepDiagError(f"model {card.full_id}: the weights do not fit the network its card describes", weights) from None
    return LoadedModel(card, network.to(device).eval(), folder)


def save_model(network: torch.nn.Module, card: ModelCard, folder: str | Path, half: bool = True) -> Path:
    """Write a model folder atomically (a temporary folder renamed into place); never overwrites."""
    folder = Path(folder)
    if folder.exists():
        raise DeepDiagError("a model already exists here; models are never overwritten", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        dtype = torch.float16 if half else torch.float32  # half precision halves the download; inference casts back
        state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        card.weights_sha256 = sha256_of(staging / WEIGHTS_FILE)
        (staging / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n")
        for path in (staging, staging / WEIGHTS_FILE, staging / CARD_FILE):  # mkdtemp makes them private
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
