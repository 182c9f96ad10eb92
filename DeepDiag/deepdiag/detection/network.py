"""The detector: torchvision's Faster R-CNN on a ResNet-18 cut after its second stage.

Why cut: nodules of 3-6 mm are 3-6 pixels at 1 mm, so features must keep stride 8 (the full
ResNet's stride 32 would lose them), and the two last stages hold most of the CPU cost.
"""

from __future__ import annotations

import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from ..precision import reduced_precision

_FEATURE_CHANNELS = 128  # ResNet-18 after layer2


class _Backbone(torch.nn.Sequential):
    """The ResNet stages, in reduced precision at inference where the hardware runs it natively
    (:mod:`deepdiag.precision`): they hold most of the cost. The features leave as float32, so the
    proposals, boxes and scores are computed as before (bfloat16 would round a box corner at 300
    pixels to 2 pixels). A Sequential as before: the weights' names are unchanged."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with reduced_precision(images.device):
            return super().forward(images).float()


def build_detector(parameters: dict) -> FasterRCNN:
    """Faster R-CNN for one class (nodule) on square slices of ``image_size`` pixels.

    The slices are given at exactly that size, so the detector's own resizing is the identity.
    """
    resnet = torchvision.models.resnet18(weights=None)
    backbone = _Backbone(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1, resnet.layer2)
    backbone.out_channels = _FEATURE_CHANNELS
    size = int(parameters["image_size"])
    return FasterRCNN(
        backbone,
        min_size=size,
        max_size=size,
        image_mean=[0.0, 0.0, 0.0],  # slices arrive normalized to [0, 1] by the card's window
        image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=AnchorGenerator(sizes=(tuple(parameters["anchor_sizes"]),), aspect_ratios=((1.0,),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(_FEATURE_CHANNELS * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, 2),  # background and nodule
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128,
        box_batch_size_per_image=128,
        box_score_thresh=float(parameters.get("slice_score_threshold", 0.05)),
        box_detections_per_img=20,
    )
