"""Train the lung / lung-nodule U-Net on phantom cases (MONAI network, loss and augmentation)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from .segmentation_data import SMALL_NODULE_VOXELS, Example, sample_patch


def augmentation(seed: int, affine: bool = False) -> Compose:
    """Flips (and small rotations and zooms) move image and labels together; intensity changes
    touch the image only. Affine changes are off for the shipped model's recipe."""
    both, image = ["image", "label"], ["image"]
    spatial = [
        RandAffined(
            both,
            prob=0.3,
            rotate_range=(0.15, 0.15, 0.15),
            scale_range=0.1,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    ]
    transforms = Compose(
        [
            RandFlipd(both, prob=0.5, spatial_axis=2),  # left-right
            RandFlipd(both, prob=0.2, spatial_axis=1),
            *(spatial if affine else []),
            RandScaleIntensityd(image, factors=0.1, prob=0.5),
            RandShiftIntensityd(image, offsets=0.05, prob=0.5),
            RandAdjustContrastd(image, gamma=(0.8, 1.25), prob=0.3),
            RandGaussianNoised(image, prob=0.3, std=0.02),
        ]
    )
    transforms.set_random_state(seed=seed)
    return transforms


@dataclass(frozen=True)
class Recipe:
    """How patches are drawn and how the loss weighs them. The defaults are the recipe of
    versions 1 and 2 and of fine-tuning: one Dice over the whole batch, nodules drawn alike."""

    nodule_share: float = 0.5  # patches centred near a nodule
    small_nodule_boost: float = 1.0  # how much more often a small nodule is drawn than a large one
    small_nodule_voxels: int = SMALL_NODULE_VOXELS
    per_patch_dice: bool = (
        False  # one Dice per patch, so a patch around a 4 mm nodule counts as much as one around a 30 mm one
    )
    nodule_weight: float = 1.0  # weight of the nodule class in cross-entropy and Dice (background and lungs: 1)

    def loss(self) -> DiceCELoss:
        weight = torch.tensor([1.0, 1.0, self.nodule_weight]) if self.nodule_weight != 1.0 else None
        return DiceCELoss(to_onehot_y=True, softmax=True, batch=not self.per_patch_dice, weight=weight)


class PatchTrainer:
    """Trains a network on random patches of examples, in as many runs of steps as the caller
    likes (an epoch each, for fine-tuning), under one one-cycle learning-rate schedule."""

    def __init__(
        self,
        network: torch.nn.Module,
        examples: list[Example],
        patch: tuple[int, int, int],
        batch_size: int,
        device: torch.device,
        seed: int,
        learning_rate: float,
        total_steps: int,
        affine: bool = False,
        recipe: Recipe = Recipe(),
    ) -> None:
        torch.manual_seed(seed)
        self.network, self.examples, self.patch, self.batch_size, self.device = (
            network.to(device),
            examples,
            patch,
            batch_size,
            device,
        )
        self.rng = np.random.default_rng(seed)
        self.augment = augmentation(seed, affine)
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=learning_rate, total_steps=total_steps, pct_start=0.1
        )
        self.recipe = recipe
        self.loss_function = recipe.loss().to(device)
        self.scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
        self.steps_done = 0

    def run(self, steps: int, on_step: Callable[[int, float], None] | None = None) -> float:
        """Train ``steps`` batches; returns their mean loss."""
        self.network.train()
        losses = []
        for _ in range(steps):
            images, labels = _batch(
                self.examples, self.patch, self.batch_size, self.rng, self.augment, self.recipe, self.device
            )
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"):
                loss = self.loss_function(self.network(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            self.steps_done += 1
            losses.append(float(loss.detach()))
            if on_step:
                on_step(self.steps_done, float(np.mean(losses[-50:])))
        self.network.eval()
        return float(np.mean(losses)) if losses else float("nan")


def train(
    network: torch.nn.Module,
    examples: list[Example],
    patch: tuple[int, int, int],
    iterations: int,
    batch_size: int,
    device: torch.device,
    seed: int,
    learning_rate: float = 2e-3,
    on_progress: Callable[[int, float], None] | None = None,
    recipe: Recipe = Recipe(),
) -> dict:
    """Train in place; returns a summary (iterations, final loss, seconds)."""
    started, recent = time.perf_counter(), [float("nan")]
    trainer = PatchTrainer(network, examples, patch, batch_size, device, seed, learning_rate, iterations, recipe=recipe)

    def on_step(step: int, loss: float) -> None:
        recent[0] = loss
        if on_progress and (step % 50 == 1 or step == iterations):
            on_progress(step, loss)

    trainer.run(iterations, on_step)
    return {
        "iterations": iterations,
        "final_loss": round(recent[0], 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _batch(examples, patch, batch_size, rng, augment, recipe, device):
    """Patches are augmented where the network runs: on a GPU the CPU would otherwise be the bottleneck."""
    images, labels = [], []
    for _ in range(batch_size):
        image, label = sample_patch(
            examples[int(rng.integers(len(examples)))],
            patch,
            rng,
            recipe.nodule_share,
            recipe.small_nodule_voxels,
            recipe.small_nodule_boost,
        )
        sample = augment(
            {"image": torch.as_tensor(image[None], device=device), "label": torch.as_tensor(label[None], device=device)}
        )
        images.append(torch.as_tensor(sample["image"], dtype=torch.float32))
        labels.append(torch.as_tensor(sample["label"]).long())
    return torch.stack(images), torch.stack(labels)
