"""Nodule detection: torchvision Faster R-CNN on 2.5D axial slices, merged into 3D findings."""
