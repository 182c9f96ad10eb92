"""The model card: what a model is, how to feed it, what it was trained on and measured."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeepDiagError
from ..terminology import Code, SegmentClass

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
TORCHSCRIPT_FILE = "model.ts"
TORCHSCRIPT = "TorchScript"  # the card's network name for an imported TorchScript archive
#: a model id names a folder: letters, digits, '-', '_' and '.', starting with a letter or digit,
#: so that no id can hold a path separator or climb out of the models folder with ".."
MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_model_id(model_id, version, source) -> None:
    """Refuse an id or version that could not be a plain folder name ``<id>@<version>``."""
    if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id) or ".." in model_id:
        raise DeepDiagError(
            f"refused: the model id {model_id!r} may hold only letters, digits, '-', '_' and '.' "
            "(no path separators, no '..')",
            source,
        )
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 1_000_000:
        raise DeepDiagError(f"refused: the model version {version!r} must be a whole number from 1", source)


@dataclass
class ModelCard:
    """Contents of ``model.json``; unknown keys are kept as they are."""

    id: str
    version: int
    task: str
    network: dict[str, Any]
    input: dict[str, Any]
    patch_size: list[int]
    classes: list[dict[str, Any]]
    weights_sha256: str = ""
    postprocessing: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full_id(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def is_torchscript(self) -> bool:
        return self.network.get("name") == TORCHSCRIPT

    @property
    def weights_file(self) -> str:
        return TORCHSCRIPT_FILE if self.is_torchscript else WEIGHTS_FILE

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.input["spacing_mm"])

    @property
    def default_min_score(self) -> float:
        """A detector's recommended score threshold (``postprocessing.default_min_score``; 0.5 when absent)."""
        return float(self.postprocessing.get("default_min_score", 0.5))

    def segment_classes(self) -> list[SegmentClass]:
        """The foreground classes as named, colored, coded segments."""
        return [
            SegmentClass(
                c["name"],
                int(c["label_value"]),
                tuple(c["color"]),
                Code(*c["category"].split("^")),
                Code(*c["type"].split("^")),
                Code(*c["region"].split("^")) if c.get("region") else Code("", "", ""),
            )
            for c in self.classes
        ]

    def to_json(self) -> dict[str, Any]:
        known = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**known, **self.extra}

    @classmethod
    def read(cls, folder: str | Path) -> ModelCard:
        path = Path(folder) / CARD_FILE
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            raise DeepDiagError(f"not a model folder: it has no {CARD_FILE}", folder) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DeepDiagError(f"the model card is not valid JSON ({error})", path) from None
        names = set(cls.__dataclass_fields__) - {"extra"}
        missing = {"id", "version", "task", "network", "input", "patch_size", "classes"} - set(document)
        if missing:
            raise DeepDiagError(f"the model card lacks {', '.join(sorted(missing))}", path)
        check_model_id(document["id"], document["version"], path)
        check_card_fields(document, path)
        return cls(
            **{k: v for k, v in document.items() if k in names},
            extra={k: v for k, v in document.items() if k not in names},
        )


def check_card_fields(document: dict, source) -> None:
    """Refuse, naming the field, a card whose fields do not have the form the engine reads: at
    import and at every load, so that a bad card never ends in an error from deep inside."""

    def refuse(field: str, problem: str) -> None:
        raise DeepDiagError(f"the model card's {field} {problem}", source)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not isinstance(document["task"], str) or not document["task"]:
        refuse("task", 'must be a name such as "segmentation"')
    network = document["network"]
    if not isinstance(network, dict) or not isinstance(network.get("name"), str):
        refuse("network", 'must be an object with a "name"')
    if not isinstance(network.get("parameters", {}), dict):
        refuse("network.parameters", "must be an object of parameter names and values")
    model_input = document["input"]
    if not isinstance(model_input, dict):
        refuse("input", "must be an object (channels, spacing_mm, intensity ...)")
    spacing = model_input.get("spacing_mm", [1.0, 1.0, 1.0])
    if not isinstance(spacing, list) or len(spacing) not in (2, 3) or not all(number(v) and v > 0 for v in spacing):
        refuse("input.spacing_mm", f"must be 3 positive numbers, not {spacing!r}")
    window = model_input.get("intensity", {})
    if not isinstance(window, dict) or (
        "min_hu" in window
        and not (number(window["min_hu"]) and number(window.get("max_hu")) and window["min_hu"] < window["max_hu"])
    ):
        refuse("input.intensity", f"must give min_hu below max_hu, not {window!r}")
    noise_bound = model_input.get("max_air_noise_hu")
    if noise_bound is not None and not (number(noise_bound) and noise_bound > 0):
        refuse("input.max_air_noise_hu", f"must be a positive number of HU, not {noise_bound!r}")
    patch = document["patch_size"]
    if (
        not isinstance(patch, list)
        or len(patch) not in (2, 3)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in patch)
    ):
        refuse("patch_size", f"must be 2 or 3 positive whole numbers, not {patch!r}")
    classes = document["classes"]
    if not isinstance(classes, list):
        refuse("classes", f"must be a list of classes, not {classes!r}")
    for index, item in enumerate(classes):
        color = item.get("color", [0, 0, 0]) if isinstance(item, dict) else None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("label_value", 0), int)
            and not isinstance(item.get("label_value", 0), bool)
            and isinstance(color, list)
            and len(color) == 3
            and all(number(c) for c in color)
        ):
            refuse(
                f"classes[{index}]",
                "must have a name, and a whole-number label_value and an RGB color of 3 numbers where given",
            )
    for section in ("postprocessing", "training", "metrics"):
        if not isinstance(document.get(section, {}), dict):
            refuse(section, "must be an object")
