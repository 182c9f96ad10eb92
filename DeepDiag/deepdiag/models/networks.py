"""Networks a model card can name: any network class of ``monai.networks.nets``, by name, and
for detection the project's Faster R-CNN (``deepdiag.detection.network``).

Only a class name and literal parameters come from the card, never code, so a card cannot make
the engine run anything but a MONAI network's constructor. That constructor must not reach the
network either: parameters that download weights (``pretrained``, ``pretrained_url``...) or name
a URL or a path are refused, and the network is built with torch.hub's and urllib's downloads
made impossible. A network is first built on PyTorch's meta device (no memory), so that a card
asking for billions of parameters is refused before anything is allocated.
"""

from __future__ import annotations

import contextlib
import re
import urllib.request
from collections.abc import Iterator
from unittest import mock

import torch
import torch.hub
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

        _refuse_downloads(card.full_id, card.network.get("parameters", {}))
        with _no_network_access():
            return build_detector(card.network.get("parameters", {}))
    name = card.network.get("name")
    network = network_class(name)
    if network is None:
        raise DeepDiagError(f"model {card.full_id}: {name!r} is not a network of monai.networks.nets")
    parameters = card.network.get("parameters", {})
    _refuse_downloads(card.full_id, parameters)
    try:
        with _no_network_access():
            with torch.device("meta"):
                parameter_count = sum(p.numel() for p in network(**parameters).parameters())
            if parameter_count > MAX_PARAMETERS:
                raise DeepDiagError(
                    f"model {card.full_id}: {name} with these parameters has {parameter_count:,} weights; "
                    f"DeepDiag builds at most {MAX_PARAMETERS:,}"
                )
            return network(**parameters)
    except (TypeError, ValueError, AttributeError, RuntimeError) as error:
        raise DeepDiagError(f"model {card.full_id}: cannot build {name} from the card's parameters ({error})") from None


#: 500 million weights: 2 GB in float32, ten times MONAI's largest 3D segmentation networks
MAX_PARAMETERS = 500_000_000
_DOWNLOAD_NAMES = re.compile(r"pretrain|url|path|file|weights|checkpoint|download|hub", re.IGNORECASE)
_URL_OR_PATH = re.compile(r"^[a-z][a-z0-9+.-]*://|^[/\\~.]|^[a-z]:[/\\]|[/\\]", re.IGNORECASE)


def _refuse_downloads(full_id: str, parameters: dict) -> None:
    for key, value in parameters.items():
        asks = _DOWNLOAD_NAMES.search(key) and value not in (None, False, "", 0)
        names_a_place = isinstance(value, str) and _URL_OR_PATH.search(value)
        if asks or names_a_place:
            raise DeepDiagError(
                f"model {full_id}: refused: the network parameter {key}={value!r} would load weights from "
                "the network or a file; a model's weights come from its own folder only"
            )


@contextlib.contextmanager
def _no_network_access() -> Iterator[None]:
    """Constructors that fetch weights call torch.hub or urllib: make both fail at once."""

    def refuse(*args, **kwargs):
        raise RuntimeError("a network constructor tried to download (refused)")

    with (
        mock.patch.object(torch.hub, "load_state_dict_from_url", refuse),
        mock.patch.object(torch.hub, "download_url_to_file", refuse),
        mock.patch.object(urllib.request, "urlopen", refuse),
        mock.patch.object(urllib.request, "urlretrieve", refuse),
    ):
        yield
