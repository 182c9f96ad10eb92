"""Networks a model card can name, built from MONAI."""

from __future__ import annotations

import torch
from monai.networks.nets import UNet

from ..errors import DeepDiagError

_NETWORKS = {"UNet": UNet}


def build_network(card) -> torch.nn.Module:
    name = card.network.get("name")
    if name not in _NETWORKS:
        raise DeepDiagError(f"model {card.full_id}: unknown network {name!r}; known: {', '.join(_NETWORKS)}")
    return _NETWORKS[name](**card.network.get("parameters", {}))
