"""The model card: what a model is, how to feed it, what it was trained on and measured."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeepDiagError
from ..terminology import Code, SegmentClass

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
TORCHSCRIPT_FILE = "model.ts"
TORCHSCRIPT = "TorchScript"  # the card's network name for an imported TorchScript archive


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
                c["name"], int(c["label_value"]), tuple(c["color"]),
                Code(*c["category"].split("^")), Code(*c["type"].split("^")),
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
        return cls(**{k: v for k, v in document.items() if k in names}, extra={k: v for k, v in document.items() if k not in names})
