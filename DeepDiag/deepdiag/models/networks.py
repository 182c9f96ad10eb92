"""Networks a model card can name: any network class of ``monai.networks.nets``, by name, and
for detection the project's Faster R-CNN (``deepdiag.detection.network``).

Only a class name and literal parameters come from the card, never code, so a card cannot make
the engine run anything but a MONAI network's constructor.
"""

from __future__ import annotations

import torch
from monai.networks import nets

from ..errors import DeepDiagError


def network_class(name: object) -> type[torch.nn.Module] | None:
    """The MONAI network class called ``name`` (``"UNet"`` or ``"monai.networks.nets.UNet"``), or None."""
    if not isinstance(name, str):
        return None
    short = name.rsplit(".", 1)[-1]
    if name != short and not name.startswith("monai.networks.nets."):
        return None
    found = getattr(nets, short, None)
    return found if isinstance(found, type) and issubclass(found, torch.nn.Module) else None


def build_network(card) -> torch.nn.Module:
    if card.task == "detection":
        from ..detection.network import build_detector

        return build_detector(card.network.get("parameters", {}))
    name = card.network.get("name")
    network = network_class(name)
    if network is None:
        raise DeepDiagError(f"model {card.full_id}: {name!r} is not a network of monai.networks.nets")
    try:
        return network(**card.network.get("parameters", {}))
    except (TypeError, ValueError) as error:
        raise DeepDiagError(f"model {card.full_id}: cannot build {name} from the card's parameters ({error})") from None
