"""Bring an outside model into the user's model folder.

Accepted: a model folder (``model.json`` + weights) or a zip of one, a MONAI bundle folder or
zip (``configs/`` + ``models/model.pt``), and a TorchScript file. Nothing imported is trusted:
state dicts are read with ``torch.load(weights_only=True)``, which refuses pickled code; a
bundle's network must be a ``monai.networks.nets`` class with literal parameters (no ``$``
expressions, which MONAI's config parser would evaluate); zip entries may not leave the folder
they are extracted into. The model is checked by loading it before it is installed.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import torch

from ..errors import DeepDiagError
from .card import CARD_FILE, TORCHSCRIPT, TORCHSCRIPT_FILE, ModelCard, check_model_id
from .networks import network_class
from .registry import install_folder
from .store import load_model, save_model, sha256_of

_BUNDLE_CONFIGS = ("inference.json", "train.json")
_TORCHSCRIPT_SUFFIXES = (".ts", ".pt", ".pth", ".zip")


def import_model(source: str | Path, model_id: str | None = None, version: int | None = None) -> Path:
    """Install ``source`` as a registry model; returns its folder. ``model_id`` / ``version``
    name it when the source does not (bundles, TorchScript) or to rename it."""
    source = Path(source)
    if model_id is not None or version is not None:
        check_model_id("unnamed" if model_id is None else model_id, 1 if version is None else version, source)
    if not source.exists():
        raise DeepDiagError("does not exist", source)
    with tempfile.TemporaryDirectory(prefix="deepdiag-import-") as work:
        work = Path(work)
        root = source
        if source.is_file() and zipfile.is_zipfile(source) and not _is_torchscript(source):
            root = _model_root(extract_zip_safely(source, work / "extracted"), source)
        try:
            staged = _stage(root, work / "staged", model_id, version)
            load_model(staged)  # checksum, network and weights must all fit before anything is installed
        except DeepDiagError as error:
            raise _named_after_source(error, work, root, source) from None
        return install_folder(staged)


def _named_after_source(error: DeepDiagError, work: Path, root: Path, source: Path) -> DeepDiagError:
    """An error about a file in the import's temporary folder (the extracted zip, the staged
    model), named after the user's source instead: the temporary folder is gone by the time the
    message is read."""
    if error.path:
        for folder in (root, work / "staged" / "model", work):
            if folder.is_relative_to(work) and Path(error.path).is_relative_to(folder):
                inside = Path(error.path).relative_to(folder)
                return DeepDiagError(f"{inside}: {error.problem}" if inside.parts else error.problem, source)
    return error


def extract_zip_safely(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target``, refusing the whole archive if any entry is absolute,
    climbs out with ``..`` or is a link."""
    with zipfile.ZipFile(archive) as bundle:
        _refuse_zip_bomb(bundle.infolist(), archive)
        for entry in bundle.infolist():
            path = PurePosixPath(entry.filename.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or (entry.filename[1:2] == ":"):
                raise DeepDiagError(
                    f"refused: the archive entry {entry.filename!r} would be written outside the import folder", archive
                )
            if stat.S_ISLNK(entry.external_attr >> 16):
                raise DeepDiagError(f"refused: the archive entry {entry.filename!r} is a link", archive)
        bundle.extractall(target)
    return target


#: an imported model unpacks to at most this (the shipped ones are under 6 MB) ...
MAX_UNPACKED_BYTES = 2 * 1024**3
#: ... and no entry expands more than this many times (weights hardly compress; a bomb expands 1000-fold)
MAX_COMPRESSION_RATIO = 200


def _refuse_zip_bomb(entries: list[zipfile.ZipInfo], archive: Path) -> None:
    """Check the sizes the archive declares before anything is extracted."""
    total = sum(entry.file_size for entry in entries)
    if total > MAX_UNPACKED_BYTES:
        raise DeepDiagError(
            f"refused: the archive would unpack to {total / 1024**3:.1f} GB (at most "
            f"{MAX_UNPACKED_BYTES / 1024**3:.0f} GB)",
            archive,
        )
    for entry in entries:
        if entry.file_size > 1024**2 and entry.file_size > MAX_COMPRESSION_RATIO * max(entry.compress_size, 1):
            raise DeepDiagError(
                f"refused: the archive entry {entry.filename!r} expands "
                f"{entry.file_size // max(entry.compress_size, 1)} "
                f"times (a zip bomb; at most {MAX_COMPRESSION_RATIO})",
                archive,
            )


def _model_root(extracted: Path, archive: Path) -> Path:
    """The folder inside an extracted archive that holds the model (itself or its only subfolder)."""
    candidates = [extracted, *[p for p in extracted.iterdir() if p.is_dir()]]
    for folder in candidates:
        if (folder / CARD_FILE).is_file() or (folder / "configs").is_dir():
            return folder
    raise DeepDiagError("holds neither a model folder (model.json) nor a MONAI bundle (configs/)", archive)


def _stage(source: Path, staged: Path, model_id: str | None, version: int | None) -> Path:
    if source.is_dir() and (source / CARD_FILE).is_file():
        return _stage_model_folder(source, staged, model_id, version)
    if source.is_dir() and (source / "configs").is_dir():
        return _stage_bundle(source, staged, model_id, version)
    if source.is_file() and _is_torchscript(source):
        return _stage_torchscript(source, staged, model_id, version)
    raise DeepDiagError("is not a model folder, a MONAI bundle, a zip of either, or a TorchScript file", source)


def _stage_model_folder(source: Path, staged: Path, model_id: str | None, version: int | None) -> Path:
    card = ModelCard.read(source)
    shutil.copytree(source, staged / "model", ignore=shutil.ignore_patterns(".*"))
    if model_id or version:
        card.id, card.version = model_id or card.id, version or card.version
        (staged / "model" / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n")
    return staged / "model"


def _stage_bundle(bundle: Path, staged: Path, model_id: str | None, version: int | None) -> Path:
    weights = bundle / "models" / "model.pt"
    if not weights.is_file():
        raise DeepDiagError("is a MONAI bundle without models/model.pt", bundle)
    network_def = _bundle_network(bundle)
    state = _read_state_dict(weights)
    metadata = (
        _read_json(bundle / "configs" / "metadata.json") if (bundle / "configs" / "metadata.json").is_file() else {}
    )
    name = network_def["_target_"].rsplit(".", 1)[-1]
    parameters = {k: v for k, v in network_def.items() if k != "_target_"}
    card = ModelCard(
        id=model_id or _slug(metadata.get("name") or bundle.name),
        version=version or 1,
        task=str(metadata.get("task", "segmentation")).lower().split()[0] if metadata.get("task") else "segmentation",
        network={"name": name, "parameters": parameters},
        input={
            "channels": parameters.get("in_channels", 1),
            "modality": "CT",
            "spacing_mm": [1.0, 1.0, 1.0],
            "intensity": {"type": "window", "min_hu": -1000.0, "max_hu": 400.0},
        },
        patch_size=[96, 96, 96],
        classes=[],
        description=str(metadata.get("description", "")),
        extra={
            "imported_from": f"MONAI bundle {bundle.name} (version {metadata.get('version', 'unknown')})",
            "to_complete": ["input.spacing_mm", "input.intensity", "patch_size", "classes", "task"],
        },
    )
    network = network_class(name)(**parameters)
    try:
        network.load_state_dict(state)
    except RuntimeError:
        raise DeepDiagError(f"the weights do not fit the bundle's {name} network", weights) from None
    return save_model(network, card, staged / "model", half=False)


def _bundle_network(bundle: Path) -> dict:
    for name in _BUNDLE_CONFIGS:
        config = bundle / "configs" / name
        if config.is_file():
            network_def = _read_json(config).get("network_def")
            break
    else:
        raise DeepDiagError(
            f"is a MONAI bundle without a JSON network config ({' or '.join('configs/' + n for n in _BUNDLE_CONFIGS)})",
            bundle,
        )
    if not isinstance(network_def, dict) or network_class(network_def.get("_target_")) is None:
        raise DeepDiagError("refused: network_def must name a class of monai.networks.nets in _target_", config)
    if any(isinstance(value, str) and value[:1] in "$@%" for value in _literals(network_def)):
        raise DeepDiagError(
            "refused: network_def holds expressions or references ($, @, %); only literal parameters are imported",
            config,
        )
    return network_def


def _stage_torchscript(archive: Path, staged: Path, model_id: str | None, version: int | None) -> Path:
    folder = staged / "model"
    folder.mkdir(parents=True)
    shutil.copyfile(archive, folder / TORCHSCRIPT_FILE)
    card = ModelCard(
        id=model_id or _slug(archive.stem),
        version=version or 1,
        task="segmentation",
        network={"name": TORCHSCRIPT},
        input={
            "channels": 1,
            "modality": "CT",
            "spacing_mm": [1.0, 1.0, 1.0],
            "intensity": {"type": "window", "min_hu": -1000.0, "max_hu": 400.0},
        },
        patch_size=[96, 96, 96],
        classes=[],
        weights_sha256=sha256_of(folder / TORCHSCRIPT_FILE),
        extra={
            "imported_from": f"TorchScript file {archive.name}",
            "to_complete": ["input.spacing_mm", "input.intensity", "patch_size", "classes", "task"],
        },
    )
    (folder / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n")
    return folder


def _read_state_dict(weights: Path) -> dict:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the refusal below says it all
            warnings.simplefilter("ignore")
            loaded = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message ends with advice to load with weights_only=False: the very thing refused here
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise DeepDiagError(
            f"refused: the file holds Python objects other than tensors{what}, which could run code when loaded",
            weights,
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise DeepDiagError(f"cannot read the weights ({str(error).splitlines()[0]})", weights) from None
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DeepDiagError("holds no state dict (a mapping of names to tensors)", weights)
    return state


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with a ``code/`` folder."""
    if path.suffix.lower() not in _TORCHSCRIPT_SUFFIXES or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in f"/{name}" for name in archive.namelist())


def _literals(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _literals(item)
    elif isinstance(value, list):
        for item in value:
            yield from _literals(item)
    else:
        yield value


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DeepDiagError(f"is not valid JSON ({error})", path) from None


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split()) or "imported-model"
