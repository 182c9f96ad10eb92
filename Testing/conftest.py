"""Shared fixtures: paths to the shared data, a real MRML scene, oblique test volumes, a tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"
DICOM_SERIES = SHARED_DATA / "totalseg" / "abdomen_ct_dicom"

sys.path.insert(0, str(PROJECT_ROOT / "DeepDiag"))  # the engine and the bridge, as Slicer sees them


#: the files that take minutes (model accuracy, fine-tuning, the hostile suite), slowest first:
#: they start first, so that with two workers (``make test``, whole files per worker) the short
#: files fill the other worker instead of one long file running alone at the end (make test keeps
#: this order with --no-loadscope-reorder: xdist would otherwise start the files with most tests)
SLOW_FILES = (
    "test_fine_tuning_domain_shift.py",
    "test_classification_accuracy.py",
    "test_segmentation_accuracy.py",
    "test_hostile_input.py",
    "test_detection_accuracy.py",
    "test_analyze.py",
    "test_real_scans.py",
    "test_dicom_results.py",
    "test_classification.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: index for index, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: file order kept otherwise


@pytest.fixture(scope="session", autouse=True)
def user_models_folder(tmp_path_factory) -> Path:
    """The user's model folder of this test session: empty at first, never ``~/.deepdiag/models``,
    so that no test sees or changes the models of the person running the tests (and parallel
    test workers never share one)."""
    folder = tmp_path_factory.mktemp("user-models")
    previous = os.environ.get("DEEPDIAG_MODELS")
    os.environ["DEEPDIAG_MODELS"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("DEEPDIAG_MODELS", None)
    else:
        os.environ["DEEPDIAG_MODELS"] = previous


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}; the project expects ../shared beside it")
    return SHARED_DATA


@pytest.fixture
def oblique_volume():
    """A small CT-like volume with oblique direction, anisotropic spacing and an off-zero origin."""
    from deepdiag.geometry import Volume

    rng = np.random.default_rng(7)
    angle = 0.37
    axis = np.array([1.0, 2.0, 3.0]) / np.linalg.norm([1.0, 2.0, 3.0])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    return Volume(
        array=rng.integers(-1024, 1500, size=(9, 11, 13)).astype(np.int16),
        spacing=(0.7123456789, 0.91, 2.5),
        origin=(-123.456789, 45.6, -789.012345678),
        direction=rotation,
    )


@pytest.fixture
def scene():
    """A real MRML scene with the logics Slicer would have registered (markups, segmentations)."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")
    mrml_scene = slicer.vtkMRMLScene()
    selection = slicer.vtkMRMLSelectionNode()
    selection.SetSingletonTag("Singleton")
    mrml_scene.AddNode(selection)
    logics = [slicer.vtkSlicerMarkupsLogic(), slicer.vtkSlicerSegmentationsModuleLogic()]
    for logic in logics:
        logic.SetMRMLScene(mrml_scene)
    mrml_scene.deepdiag_logics = logics  # keep the logics alive as long as the scene
    yield mrml_scene
    mrml_scene.Clear(1)


SMALL_CASE = [
    "--size",
    "160",
    "160",
    "100",
    "--spacing",
    "2.2",
    "2.2",
    "3.75",
    "--nodules",
    "2",
    "2",
    "--diameter",
    "10",
    "18",
]


@pytest.fixture(scope="module")
def small_case(tmp_path_factory):
    """A coarse phantom folder (one case, two nodules of 10-18 mm), quick to segment or detect."""
    folder = tmp_path_factory.mktemp("case")
    result = run_cli("phantom", "-o", str(folder), "--seed", "5", "--progress", "none", *SMALL_CASE)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real model folder (card + safetensors) whose network is small and untrained."""
    import torch

    from deepdiag.models.networks import build_network
    from deepdiag.models.store import save_model

    card = _tiny_segmentation_card("tiny-test-seg")
    torch.manual_seed(0)
    return save_model(build_network(card), card, tmp_path_factory.mktemp("models") / "tiny-test-seg@1")


@pytest.fixture(scope="module")
def background_model(tmp_path_factory):
    """A tiny model that calls every voxel background: for tests of how scans are scheduled, where
    an untrained model's thousand noise "nodules" would only cost post-processing time."""
    import torch

    from deepdiag.models.networks import build_network
    from deepdiag.models.store import save_model

    card = _tiny_segmentation_card("tiny-background-seg")
    network = build_network(card)
    last = [m for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([8.0, -8.0, -8.0]))
    return save_model(network, card, tmp_path_factory.mktemp("models") / "tiny-background-seg@1")


def _tiny_segmentation_card(model_id: str):
    from deepdiag.models import ModelCard
    from deepdiag.terminology import LUNG_NODULES, LUNGS

    card = ModelCard(
        id=model_id,
        version=1,
        task="segmentation",
        network={
            "name": "UNet",
            "parameters": {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]},
        },
        input={
            "channels": 1,
            "modality": "CT",
            "spacing_mm": [3.0, 3.0, 3.0],
            "intensity": {"min_hu": -1000, "max_hu": 400},
        },
        patch_size=[32, 32, 32],
        classes=[
            {
                "name": c.name,
                "label_value": c.label_value,
                "color": list(c.color),
                "category": c.category.encode(),
                "type": c.type.encode(),
                "region": c.region.encode() if c.region.value else "",
            }
            for c in (LUNGS, LUNG_NODULES)
        ],
        postprocessing={"min_nodule_volume_mm3": 8.0},
    )
    return card


def load_volume_node(scene, path: Path):
    """Load a file as a scalar volume node, as Slicer's loadVolume does."""
    import slicer

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", path.name.split(".")[0])
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"slicer-core could not read {path}"
    return node


def run_cli(*arguments: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python -m deepdiag`` as the Slicer bridge does, in a child process."""
    return subprocess.run(
        cli_command(*arguments), capture_output=True, text=True, cwd=PROJECT_ROOT, env=cli_env(env), timeout=timeout
    )


def cli_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "deepdiag", *arguments]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an engine run: the engine on the path, the session's model folder."""
    return {
        "PYTHONPATH": str(PROJECT_ROOT / "DeepDiag"),
        "PATH": "/usr/bin:/bin",
        "DEEPDIAG_MODELS": os.environ["DEEPDIAG_MODELS"],
        # the thread count make test chooses for the engine runs of parallel test workers
        **{name: os.environ[name] for name in ("OMP_NUM_THREADS",) if name in os.environ},
        **(extra or {}),
    }


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    """A real detection model folder (card + safetensors), untrained, on a coarse 3 mm grid for speed."""
    import torch

    from deepdiag.models import ModelCard
    from deepdiag.models.networks import build_network
    from deepdiag.models.store import save_model

    card = ModelCard(
        id="tiny-test-det",
        version=1,
        task="detection",
        network={
            "name": "FasterRCNN",
            "parameters": {"image_size": 64, "anchor_sizes": [4, 8, 16], "slice_score_threshold": 0.0},
        },
        input={
            "channels": 3,
            "modality": "CT",
            "spacing_mm": [3.0, 3.0, 3.0],
            "intensity": {"min_hu": -1000, "max_hu": 400},
        },
        patch_size=[64, 64],
        classes=[
            {
                "name": "Lung nodule",
                "label_value": 1,
                "color": [1, 0, 0],
                "category": "SCT^49755003^Morphologically Altered Structure",
                "type": "SCT^27925004^Nodule",
                "region": "SCT^39607008^Lung",
            }
        ],
    )
    torch.manual_seed(0)
    return save_model(build_network(card), card, tmp_path_factory.mktemp("models") / "tiny-test-det@1")


def with_uids(anonymized: Path, folder: Path) -> Path:
    """A copy of the shared real series with the study, series and instance UIDs its anonymizer
    emptied put back (as the scanner's original in a PACS has them); pixels and geometry untouched."""
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    for file in sorted(anonymized.iterdir()):
        dataset = dcmread(file)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.PatientID = study, series, "ANON"
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.save_as(folder / file.name)
    return folder


def errors_of_dciodvfy(path: Path) -> list[str]:
    """The error lines dciodvfy (dicom3tools) prints for a DICOM file; warnings are left out."""
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


def source_uids(series: Path) -> list[str]:
    """The SOPInstanceUIDs of a series folder's slices, in the volume's slice order."""
    from deepdiag.image_io import dicom_series_files

    return [dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in dicom_series_files(series)]


def seg_labels_on_source(seg, series: Path) -> np.ndarray:
    """The SEG's segments on the source slices, nodules folded into one label as in the .seg.nrrd."""
    numbers = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=source_uids(series), combine_segments=True, skip_overlap_checks=True
    )
    return np.where(numbers >= 2, 2, numbers)


def assert_seg_matches(seg_file: Path, seg_nrrd: Path, series: Path) -> None:
    """The DICOM SEG holds the .seg.nrrd's voxels on the source slices, its frames lie on them,
    and its segments are the lungs and one per nodule, coded and attributed to the model."""
    import highdicom as hd
    import SimpleITK as sitk

    from deepdiag.image_io import dicom_series_files

    seg = hd.seg.segread(seg_file)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_nrrd)))
    assert np.array_equal(seg_labels_on_source(seg, series), labels)
    positions = {
        item.ReferencedSOPInstanceUID: frame.PlanePositionSequence[0].ImagePositionPatient
        for frame in seg.PerFrameFunctionalGroupsSequence
        for item in frame.DerivationImageSequence[0].SourceImageSequence
    }
    for file in dicom_series_files(series):
        source = dcmread(file, stop_before_pixels=True)
        if source.SOPInstanceUID in positions:  # frames without a segmented voxel are left out
            assert np.allclose(positions[source.SOPInstanceUID], source.ImagePositionPatient, atol=1e-6)
    described = [seg.get_segment_description(n) for n in seg.segment_numbers]
    assert described[0].SegmentLabel == "Lungs"
    assert [d.SegmentLabel for d in described[1:]] == [f"Lung nodule {n}" for n in range(1, len(described))]
    assert {d.SegmentedPropertyTypeCodeSequence[0].CodeValue for d in described[1:]} <= {"27925004"}  # SCT Nodule
    algorithm = described[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "DeepDiag lung-nodules-seg" and algorithm.AlgorithmVersion.isdigit()
