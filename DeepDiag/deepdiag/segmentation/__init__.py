"""Lung and lung-nodule segmentation (``deepdiag segment``)."""

from .pipeline import SegmentationResult, segment_volume

__all__ = ["SegmentationResult", "segment_volume"]
