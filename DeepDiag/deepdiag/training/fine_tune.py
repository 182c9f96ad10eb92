"""Fine-tune a registry segmentation model on the user's own labeled cases.

The base model is only read. The best epoch (by validation Dice, the mean over lungs and nodules)
becomes a new model
version in the user's folder, written atomically at the end; an interrupted run keeps the best
complete epoch or nothing, never a half-written model.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import DeepDiagError
from ..geometry import Volume
from ..image_io import image_from_volume, read_volume, volume_from_image
from ..models.registry import find_model, model_folders, split_id, user_models_dir
from ..models.store import LoadedModel, load_model, save_model, sha256_of
from ..segmentation.inference import predict_probabilities
from ..segmentation_file import read_segmentation
from .segmentation import PatchTrainer
from .segmentation_data import Example, prepare_example


@dataclass
class FineTuneOptions:
    epochs: int = 10
    learning_rate: float = 1e-3
    val_fraction: float = 0.2
    steps_per_epoch: int = 40
    batch: int = 2
    seed: int = 0
    name: str | None = None  # id of the new model; default: the base model's id, next version

    def check(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch < 1:
            raise DeepDiagError(
                f"--epochs, --steps-per-epoch and --batch must be at least 1, got {self.epochs}, "
                f"{self.steps_per_epoch}, {self.batch}"
            )
        if not 0 < self.learning_rate < 1:
            raise DeepDiagError(f"--lr must lie in (0, 1), got {self.learning_rate}")
        if not 0 <= self.val_fraction < 1:
            raise DeepDiagError(f"--val-fraction must lie in [0, 1), got {self.val_fraction}")


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    validation: dict[str, float]
    best: bool


def fine_tune(
    base: str,
    images: list[str],
    labels: list[str],
    options: FineTuneOptions,
    device: torch.device,
    on_stage: Callable[[str, float, str], None] = lambda stage, fraction, message: None,
    on_epoch: Callable[[EpochReport], None] = lambda report: None,
) -> dict:
    """Train ``base`` further on image/label pairs; returns what was saved and measured."""
    options.check()
    if len(images) != len(labels) or not images:
        raise DeepDiagError(
            f"give as many --labels as --images (got {len(images)} images and {len(labels)} label files)"
        )
    model = load_model(find_model(base, "segmentation", base), device)
    if model.card.task != "segmentation" or model.card.is_torchscript:
        raise DeepDiagError(f"model {model.card.full_id} is not a trainable segmentation model")
    examples = []
    for index, (image, label) in enumerate(zip(images, labels)):
        on_stage("prepare", 0.1 * index / len(images), f"preparing {Path(image).name}")
        examples.append(_prepare_pair(image, label, model))
    training, validation = _split(examples, options)
    started = time.perf_counter()
    before = _validate(model, validation, device)
    trainer = PatchTrainer(
        model.network.float(),
        training,
        tuple(model.card.patch_size),
        options.batch,
        device,
        options.seed,
        options.learning_rate,
        options.epochs * options.steps_per_epoch,
        affine=True,
    )
    best, history, interrupted = None, [], False
    try:
        for epoch in range(1, options.epochs + 1):
            on_stage("train", 0.1 + 0.85 * (epoch - 1) / options.epochs, f"epoch {epoch} of {options.epochs}")
            loss = trainer.run(options.steps_per_epoch)
            figures = _validate(model, validation, device)
            improved = best is None or figures["mean_dice"] > best["validation"]["mean_dice"]
            if improved:
                best = {"epoch": epoch, "validation": figures, "state": copy.deepcopy(model.network.state_dict())}
            history.append({"epoch": epoch, "loss": round(loss, 4), **figures})
            on_epoch(EpochReport(epoch, options.epochs, loss, figures, improved))
    except KeyboardInterrupt:
        if best is None:
            raise
        interrupted = True
        on_stage("save", 0.95, f"interrupted: keeping the best complete epoch ({best['epoch']})")
    model.network.load_state_dict(best["state"])
    held_out = "none: too few cases, validated on the training case" if validation is training else len(validation)
    card = _new_card(model, images, labels, options, before, best, history, time.perf_counter() - started, held_out)
    folder = save_model(model.network, card, user_models_dir() / card.full_id)
    on_stage("done", 1.0, f"saved {card.full_id}")
    return {
        "model": card.full_id,
        "folder": str(folder),
        "best_epoch": best["epoch"],
        "before": before,
        "after": best["validation"],
        "epochs_completed": len(history),
        "interrupted": interrupted,
    }


def _prepare_pair(image_path: str, label_path: str, model: LoadedModel) -> Example:
    ct = read_volume(image_path)
    labels = _read_labels(label_path, model)
    if not labels.same_grid(ct):
        labels = _resample_onto(labels, ct, label_path)
    if not (labels.array == 2).any():
        raise DeepDiagError(
            "has no nodule voxels (label 2 or a segment named 'Lung nodules'); nothing to learn nodules from",
            label_path,
        )
    return prepare_example(ct, labels, model.card.spacing_mm, model.card.input["intensity"])


def _read_labels(path: str, model: LoadedModel) -> Volume:
    """A label map with the model's label values; a .seg.nrrd is mapped by segment names."""
    classes = {c.name.lower(): c.label_value for c in model.card.segment_classes()}
    if str(path).lower().endswith(".seg.nrrd"):
        volume, segments = read_segmentation(path)
        mapped = np.zeros(volume.array.shape, dtype=np.uint8)
        for segment in segments:
            name = segment.get("Name", "")
            if name.lower() not in classes:
                raise DeepDiagError(
                    f"segment {name!r} is not one of the model's classes "
                    f"({', '.join(c.name for c in model.card.segment_classes())})",
                    path,
                )
            mapped[volume.array == int(segment.get("LabelValue", 1))] = classes[name.lower()]
        return volume.with_array(mapped)
    volume = read_volume(path)
    unknown = set(np.unique(volume.array).tolist()) - {0, *classes.values()}
    if unknown:
        raise DeepDiagError(
            f"holds label values {sorted(unknown)[:5]} the model does not know (it knows 0 and "
            f"{sorted(classes.values())})",
            path,
        )
    return volume.with_array(volume.array.astype(np.uint8))


def _resample_onto(labels: Volume, ct: Volume, label_path: str) -> Volume:
    """Labels saved on a sub-box (as Slicer saves segmentations) or another grid, onto the CT's grid."""
    reference = image_from_volume(ct.with_array(np.zeros(ct.array.shape, np.uint8)))
    resampled = sitk.Resample(
        image_from_volume(labels), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )
    result = volume_from_image(resampled)
    if labels.array.any() and not result.array.any():
        raise DeepDiagError("does not overlap its image", label_path)
    return result


def _split(examples: list[Example], options: FineTuneOptions) -> tuple[list[Example], list[Example]]:
    """Seeded split; with a single case, it trains and validates on that case (and the card says so)."""
    order = np.random.default_rng(options.seed).permutation(len(examples))
    count = int(round(options.val_fraction * len(examples))) if len(examples) > 1 else 0
    count = min(max(count, 1 if options.val_fraction > 0 and len(examples) > 1 else 0), len(examples) - 1)
    validation = [examples[i] for i in order[:count]]
    training = [examples[i] for i in order[count:]]
    return training, validation or training


def _validate(model: LoadedModel, examples: list[Example], device: torch.device) -> dict[str, float]:
    """Nodule and lung Dice on the model grid, pooled over the validation cases, and their mean.

    The mean chooses the best epoch: nodule Dice alone, on the one or two validation cases a user
    has, swings by chance, and a model that loses the lungs also loses the nodules that
    post-processing keeps only where they border lung.
    """
    totals = np.zeros((2, 3))  # per class: intersection, predicted, truth
    for example in examples:
        probabilities = predict_probabilities(
            model.network, example.image.astype(np.float32), tuple(model.card.patch_size), device
        )
        predicted = np.argmax(probabilities, axis=0)
        for row, (mine, truth) in enumerate(
            [(predicted == 2, example.labels == 2), (predicted > 0, example.labels > 0)]
        ):
            totals[row] += [(mine & truth).sum(), mine.sum(), truth.sum()]
    dice = [2 * i / (p + t) if p + t else 1.0 for i, p, t in totals]
    return {
        "nodule_dice": round(float(dice[0]), 4),
        "lungs_dice": round(float(dice[1]), 4),
        "mean_dice": round(float(np.mean(dice)), 4),
    }


def _new_card(model, images, labels, options, before, best, history, seconds, validation_cases):
    card = copy.deepcopy(model.card)
    card.id = options.name or card.id
    taken = [split_id(f.name)[1] for f in model_folders() if split_id(f.name)[0] == card.id]
    card.version = 1 + max(taken + ([model.card.version] if card.id == model.card.id else []) + [0])
    card.weights_sha256 = ""
    card.training = {
        "base_model": model.card.full_id,
        "base_training": model.card.training,
        "data": [
            {
                "image": str(image),
                "labels": str(label),
                "sha256": _fingerprint(image),
                "labels_sha256": _fingerprint(label),
            }
            for image, label in zip(images, labels)
        ],
        "validation_cases": validation_cases,
        "epochs": options.epochs,
        "epochs_completed": len(history),
        "best_epoch": best["epoch"],
        "steps_per_epoch": options.steps_per_epoch,
        "batch": options.batch,
        "learning_rate": options.learning_rate,
        "seed": options.seed,
        "seconds": round(seconds, 1),
        "augmentation": "flips, small rotations and zooms, intensity scale/shift, contrast, Gaussian noise (MONAI)",
        "history": history,
    }
    card.metrics = {"validation_before": before, "validation_after": best["validation"]}
    return card


def _fingerprint(path: str) -> str:
    """SHA-256 of a file, or of a DICOM folder's files' checksums in name order."""
    if not Path(path).is_dir():
        return sha256_of(Path(path))
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    return hashlib.sha256("".join(sha256_of(f) for f in files).encode()).hexdigest()
