"""Save and load model folders. Weights are safetensors, checked against the card's SHA-256
before use, and never unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import DeepDiagError
from ..files import atomic_output
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
    weights = folder / card.weights_file
    if not weights.is_file():
        raise DeepDiagError(f"model {card.full_id} has no {card.weights_file}", folder)
    if sha256_of(weights) != card.weights_sha256:
        raise DeepDiagError(
            f"model {card.full_id}: the weights' SHA-256 does not match its card (altered or corrupt file)", weights
        )
    network = _read_torchscript(card, weights) if card.is_torchscript else _read_safetensors(card, weights)
    return LoadedModel(card, network.to(device).eval(), folder)


def _read_safetensors(card: ModelCard, weights: Path) -> torch.nn.Module:
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise DeepDiagError(f"model {card.full_id}: cannot read the weights ({error})", weights) from None
    network = build_network(card)
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError:
        raise DeepDiagError(
            f"model {card.full_id}: the weights do not fit the network its card describes", weights
        ) from None
    return network


def _read_torchscript(card: ModelCard, archive: Path) -> torch.nn.Module:
    """TorchScript archives hold their own code, in TorchScript, not Python: loading one cannot
    run arbitrary Python, and there is no network class to rebuild, so they stay archives."""
    try:
        with warnings.catch_warnings():  # torch marks TorchScript as deprecated; the user's file is still valid
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(archive), map_location="cpu").float()
    except (RuntimeError, ValueError) as error:
        # torch's messages may start with a blank line ("\nUnknown type name 'posix.system':\n..."): say the first words
        reason = next(
            (line.strip().rstrip(":") for line in str(error).splitlines() if line.strip()), type(error).__name__
        )
        raise DeepDiagError(f"model {card.full_id}: not a readable TorchScript archive ({reason})", archive) from None


def record_in_card(folder: str | Path, **entries) -> ModelCard:
    """Set top-level entries of a model's card (figures measured after training), atomically.
    The weights and their checksum are never touched."""
    folder = Path(folder)
    card = ModelCard.read(folder)
    document = {**card.to_json(), **entries}
    if document["weights_sha256"] != card.weights_sha256:
        raise DeepDiagError("the weights' checksum cannot be changed through the card", folder)
    with atomic_output(folder / CARD_FILE) as staging:
        staging.write_text(json.dumps(document, indent=2) + "\n")
    return ModelCard.read(folder)


def record_metrics(folder: str | Path, **figures) -> ModelCard:
    """Set these entries of a card's ``metrics``, keeping every other figure in it. The card is
    read when writing, not when the measuring began, so an evaluation that ran beside another
    keeps what the other recorded meanwhile (there is no lock: two writes in the same instant can
    still race)."""
    return record_in_card(folder, metrics={**ModelCard.read(Path(folder)).metrics, **figures})


def save_model(network: torch.nn.Module, card: ModelCard, folder: str | Path, half: bool = True) -> Path:
    """Write a model folder atomically (a temporary folder renamed into place); never overwrites."""
    folder = Path(folder)
    if folder.exists():
        raise DeepDiagError("a model already exists here; models are never overwritten", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        dtype = torch.float16 if half else torch.float32  # half precision halves the download; inference casts back
        state = {
            k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
            for k, v in network.state_dict().items()
        }
        save_file(state, str(staging / WEIGHTS_FILE))
        card.weights_sha256 = sha256_of(staging / WEIGHTS_FILE)
        (staging / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n")
        for path in (staging, staging / WEIGHTS_FILE, staging / CARD_FILE):  # mkdtemp makes them private
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
