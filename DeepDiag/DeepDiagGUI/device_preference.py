"""The processing device chosen in the DeepDiag hub, for new runs of every DeepDiag module."""

from __future__ import annotations

#: as the engine's --device takes them (deepdiag.cli.DEVICES; this module stays free of the engine)
DEVICES = ("auto", "cpu", "cuda", "mps")
_DEVICE_SETTING = "DeepDiag/Device"
_DEVICE_SEEN_ATTRIBUTE = "DeepDiag.DevicePreferenceSeen"


def preferredDevice() -> str:
    """The device chosen in the hub (application settings): auto, cpu, cuda or mps."""
    import qt

    value = str(qt.QSettings().value(_DEVICE_SETTING, "auto"))
    return value if value in DEVICES else "auto"


def setPreferredDevice(device: str) -> None:
    import qt

    qt.QSettings().setValue(_DEVICE_SETTING, device)


def devicePreferenceToAdopt(parameterNode, preference: str) -> str | None:
    """The device a module's parameter node should take now, or None to keep its own.

    A preference this parameter node has not seen yet (a new node, or the hub's choice changed
    since) is adopted; a device the user then picked in the module itself stays until the
    preference changes again. What the node has seen is an attribute of the MRML node, so it
    is saved with the scene.
    """
    if parameterNode.GetAttribute(_DEVICE_SEEN_ATTRIBUTE) == preference:
        return None
    parameterNode.SetAttribute(_DEVICE_SEEN_ATTRIBUTE, preference)
    return preference
