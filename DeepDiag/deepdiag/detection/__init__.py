"""Nodule detection: torchvision Faster R-CNN on 2.5D axial slices, merged into 3D findings."""

DEFAULT_MODEL = "lung-nodules-det"  # the newest version of it, when no model is named
