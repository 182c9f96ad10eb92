"""What the DeepDiag panels keep in the scene, on a real MRML scene (slicer-core).

The hub's training pairs are node references of its parameter node: saved with the scene,
read back on load, gone after Close Scene. The device chosen in the hub reaches a new run of
every module. Qt is not available outside Slicer: ``qt.QSettings`` is stood in for by a dict.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
from conftest import PROJECT_ROOT


@pytest.fixture
def hub_parameter_node(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    node.SetSingletonTag("DeepDiag")
    node.SetAttribute("ModuleName", "DeepDiag")
    return node


def _case(scene, name):
    import vtk

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image = vtk.vtkImageData()
    image.SetDimensions(4, 4, 4)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    volume.SetAndObserveImageData(image)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} labels")
    return volume, segmentation


def test_training_pairs_are_kept_on_the_parameter_node_in_the_order_added(scene, hub_parameter_node):
    from DeepDiagLib import FineTuningLogic

    first, second = _case(scene, "case A"), _case(scene, "case B")
    assert FineTuningLogic.addTrainingPair(hub_parameter_node, *first)
    assert FineTuningLogic.addTrainingPair(hub_parameter_node, *second)
    assert not FineTuningLogic.addTrainingPair(hub_parameter_node, *first)  # no pair twice
    assert FineTuningLogic.trainingPairs(hub_parameter_node) == [first, second]

    FineTuningLogic.removeTrainingPair(hub_parameter_node, 0)
    assert FineTuningLogic.trainingPairs(hub_parameter_node) == [second]
    scene.RemoveNode(second[1])  # the user deletes a segmentation: its pair goes, nothing stale remains
    assert FineTuningLogic.trainingPairs(hub_parameter_node) == []


def test_training_pairs_survive_saving_and_reloading_the_scene(tmp_path, scene, hub_parameter_node):
    import slicer

    from DeepDiagLib import FineTuningLogic

    for name in ("case A", "case B"):
        FineTuningLogic.addTrainingPair(hub_parameter_node, *_case(scene, name))
    scene.SetURL(str(tmp_path / "study.mrml"))
    assert scene.Commit()

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(tmp_path / "study.mrml"))
    assert reloaded.Connect()
    parameterNode = reloaded.GetSingletonNode("DeepDiag", "vtkMRMLScriptedModuleNode")
    names = [(v.GetName(), s.GetName()) for v, s in FineTuningLogic.trainingPairs(parameterNode)]
    assert names == [("case A", "case A labels"), ("case B", "case B labels")]
    assert all(v.GetScene() is reloaded for v, _ in FineTuningLogic.trainingPairs(parameterNode))


def test_close_scene_leaves_no_training_pair_behind(scene, hub_parameter_node):
    from DeepDiagLib import FineTuningLogic

    FineTuningLogic.addTrainingPair(hub_parameter_node, *_case(scene, "case A"))
    scene.Clear(0)  # Close Scene keeps singleton parameter nodes but removes the data nodes
    parameterNode = scene.GetSingletonNode("DeepDiag", "vtkMRMLScriptedModuleNode") or hub_parameter_node
    assert FineTuningLogic.trainingPairs(parameterNode) == []


@pytest.fixture
def device_preference(monkeypatch):
    settings = {}
    qt = types.SimpleNamespace(
        QSettings=lambda: types.SimpleNamespace(
            value=lambda key, default=None: settings.get(key, default), setValue=settings.__setitem__
        )
    )
    monkeypatch.setitem(sys.modules, "qt", qt)
    # the file alone: the package's widget module needs Slicer's ScriptedLoadableModule
    spec = importlib.util.spec_from_file_location(
        "device_preference", PROJECT_ROOT / "DeepDiag" / "DeepDiagGUI" / "device_preference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hubs_device_choice_reaches_a_new_run_of_every_module(scene, device_preference):
    from DeepDiagLib import ClassificationTask, DetectionLogic, SegmentationLogic

    volume = _case(scene, "chest")[0]
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "findings")
    markups.AddControlPoint(0, 0, 0, "N1")
    modules = {name: scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode") for name in ("Segment", "Detect")}

    def newRuns(deviceOf):
        return [
            SegmentationLogic(scene).segmentationTask(volume, device=deviceOf["Segment"]).options,
            DetectionLogic(scene).detectionTask(volume, device=deviceOf["Detect"]).options,
            ClassificationTask(volume, markups, device=device_preference.preferredDevice()).options,
        ]

    # the modules' parameter nodes start on "auto"; the user picks cuda in the hub
    device_preference.setPreferredDevice("cuda")
    device = {name: device_preference.devicePreferenceToAdopt(node, "cuda") or "auto" for name, node in modules.items()}
    assert all(_device_of(options) == "cuda" for options in newRuns(device))

    # a device picked in one module stays while the hub's choice does not change...
    device["Segment"] = "cpu"
    assert device_preference.devicePreferenceToAdopt(modules["Segment"], device_preference.preferredDevice()) is None
    # ...and gives way to the next choice made in the hub
    device_preference.setPreferredDevice("cpu")
    for name, node in modules.items():
        device[name] = (
            device_preference.devicePreferenceToAdopt(node, device_preference.preferredDevice()) or device[name]
        )
    assert all(_device_of(options) == "cpu" for options in newRuns(device))


def _device_of(options: list[str]) -> str:
    return options[options.index("--device") + 1]


def test_the_hub_and_every_module_offer_the_devices_the_engine_takes(device_preference):
    from xml.etree import ElementTree

    from deepdiag.cli import DEVICES

    assert device_preference.DEVICES == DEVICES and "mps" in DEVICES
    for module in ("DeepDiagSegment", "DeepDiagDetect"):
        ui = ElementTree.parse(PROJECT_ROOT / module / "Resources" / "UI" / f"{module}.ui")
        selector = next(w for w in ui.iter("widget") if any(s.text == "device" for s in w.iterfind("property/string")))
        offered = tuple(item.findtext("property/string") for item in selector.iterfind("item"))
        assert offered == DEVICES, f"{module}'s device selector offers {offered}"
        source = (PROJECT_ROOT / module / f"{module}.py").read_text()
        assert "Choice(list(DEVICES))" in source, f"{module}'s parameter node takes what the hub may hand it"
