"""Train the lung / lung-nodule U-Net on phantom cases (MONAI network, loss and augmentation)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from .segmentation_data import Example, sample_patch


def augmentation(seed: int) -> Compose:
    """Flips move image and labels together; intensity changes touch the image only."""
    both, image = ["image", "label"], ["image"]
    transforms = Compose([
        RandFlipd(both, prob=0.5, spatial_axis=2),  # left-right
        RandFlipd(both, prob=0.2, spatial_axis=1),
        RandScaleIntensityd(image, factors=0.1, prob=0.5),
        RandShiftIntensityd(image, offsets=0.05, prob=0.5),
        RandAdjustContrastd(image, gamma=(0.8, 1.25), prob=0.3),
        RandGaussianNoised(image, prob=0.3, std=0.02),
    ])
    transforms.set_random_state(seed=seed)
    return transforms


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
) -> dict:
    """Train in place; returns a summary (iterations, final loss, seconds)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    augment = augmentation(seed)
    network.to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=iterations, pct_start=0.1)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    started, recent = time.perf_counter(), []
    for step in range(iterations):
        images, labels = _batch(examples, patch, batch_size, rng, augment)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            loss = loss_function(network(images.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        recent = (recent + [float(loss.detach())])[-50:]
        if on_progress and (step % 50 == 0 or step == iterations - 1):
            on_progress(step + 1, float(np.mean(recent)))
    network.eval()
    return {"iterations": iterations, "final_loss": round(float(np.mean(recent)), 4), "seconds": round(time.perf_counter() - started, 1)}


def _batch(examples, patch, batch_size, rng, augment):
    images, labels = [], []
    for _ in range(batch_size):
        image, label = sample_patch(examples[int(rng.integers(len(examples)))], patch, rng)
        sample = augment({"image": image[None], "label": label[None]})
        images.append(torch.as_tensor(np.asarray(sample["image"]), dtype=torch.float32))
        labels.append(torch.as_tensor(np.asarray(sample["label"])).long())
    return torch.stack(images), torch.stack(labels)
