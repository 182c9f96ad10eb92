"""Input a hostile tester (or an ordinary hospital) sends: every task takes it or refuses it with
one clear line, and never writes a wrong result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import DICOM_SERIES, run_cli


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory):
    """``deepdiag analyze`` on the shared DICOM series, once for the module's tests."""
    out = tmp_path_factory.mktemp("dicom_analyze")
    result = run_cli("analyze", str(DICOM_SERIES), "-o", str(out), "--progress", "none", timeout=600)
    return result, out


def test_segment_takes_a_dicom_folder_and_writes_on_its_grid(tmp_path):
    result = run_cli("segment", str(DICOM_SERIES), "-o", str(tmp_path), "--progress", "none", timeout=600)
    assert result.returncode == 0, result.stderr
    written = sitk.ReadImage(str(tmp_path / "abdomen_ct_dicom.seg.nrrd"))
    source = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(DICOM_SERIES)))
    assert written.GetSize() == source.GetSize() == (512, 512, 20)
    assert written.GetSpacing() == pytest.approx(source.GetSpacing())
    assert written.GetOrigin() == pytest.approx(source.GetOrigin())
    # the series is an abdomen with the lung bases at its top: some lung, not a blank result
    assert (sitk.GetArrayViewFromImage(written) == 1).sum() > 1000


def test_detect_takes_a_dicom_folder(tmp_path):
    result = run_cli("detect", str(DICOM_SERIES), "-o", str(tmp_path), "--progress", "none", timeout=600)
    assert result.returncode == 0, result.stderr
    findings = json.loads((tmp_path / "abdomen_ct_dicom.findings.json").read_text())
    assert findings["input"] == str(DICOM_SERIES)


def test_analyze_takes_a_dicom_folder_and_writes_its_report(dicom_run):
    result, out = dicom_run
    assert result.returncode == 0, result.stderr
    assert (out / "abdomen_ct_dicom.report.html").is_file()
    assert (out / "abdomen_ct_dicom.seg.nrrd").is_file()


def test_dicom_header_gives_the_series_size_and_slice_spacing():
    from deepdiag.image_io import read_volume, volume_header

    size, spacing = volume_header(DICOM_SERIES)
    volume = read_volume(DICOM_SERIES)
    assert size == (512, 512, 20) == volume.array.shape[::-1]
    assert spacing == pytest.approx(volume.spacing)


def _one_line_error(result, *needles: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("deepdiag: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _crafted_copy(tmp_path, model_folder, **fields):
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(model_folder, crafted)
    card = json.loads((crafted / "model.json").read_text())
    card.update(fields)
    (crafted / "model.json").write_text(json.dumps(card))
    return crafted


def test_a_crafted_card_id_cannot_install_a_model_outside_the_models_folder(tmp_path, tiny_model):
    escape = tmp_path / "escape"
    crafted = _crafted_copy(tmp_path, tiny_model, id=f"/../../../{str(escape).lstrip('/')}/ESCAPED")
    models = tmp_path / "models"
    result = run_cli("models", "import", str(crafted), "--progress", "none", env={"DEEPDIAG_MODELS": str(models)})
    _one_line_error(result, "refused", "model id")
    assert not escape.exists()
    assert not models.exists() or not any(models.iterdir())


@pytest.mark.parametrize("crafted_id", ["../ESCAPED", "a/b", "..", "x..y", "a\\b"])
def test_every_id_that_is_no_plain_folder_name_is_refused(tmp_path, tiny_model, monkeypatch, crafted_id):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model

    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    with pytest.raises(DeepDiagError, match="refused: the model id"):
        import_model(_crafted_copy(tmp_path, tiny_model, id=crafted_id))
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("model_id,version", [("../../ESCAPED", None), ("a\\b", None), (None, 0)])
def test_an_import_name_that_is_no_plain_folder_name_is_refused_before_anything_is_read(
    tmp_path, tiny_model, monkeypatch, model_id, version
):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model

    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    with pytest.raises(DeepDiagError, match="refused"):
        import_model(tiny_model, model_id, version)
    assert not (tmp_path / "models").exists()


def test_non_finite_voxels_are_refused_with_their_count(tmp_path):
    array = np.full((8, 10, 12), -500.0, np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    path = tmp_path / "nan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    for task in (["info", str(path)], ["segment", str(path), "-o", str(tmp_path / "out")]):
        _one_line_error(run_cli(*task, "--progress", "none"), str(path), "4 voxels that are not numbers")
    assert not (tmp_path / "out" / "nan.seg.nrrd").exists()


@pytest.mark.parametrize("slices", [2, 3])
def test_a_volume_too_thin_for_the_filters_is_refused_before_any_work(tmp_path, slices):
    path = tmp_path / "thin.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((slices, 64, 64), -800, np.int16)), str(path))
    _one_line_error(
        run_cli("segment", str(path), "-o", str(tmp_path / "out"), "--progress", "none"), str(path), "too thin"
    )


def test_a_partial_file_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    from deepdiag.files import atomic_output

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    abandoned = tmp_path / f".scan.{dead.pid}.abcd1234.partial.seg.nrrd"
    abandoned.write_bytes(b"")
    live = tmp_path / f".scan.{__import__('os').getpid()}.efgh5678.partial.seg.nrrd"  # this process: still running
    live.write_bytes(b"")
    with atomic_output(tmp_path / "scan.seg.nrrd") as temporary:
        temporary.write_text("result")
    assert not abandoned.exists()
    assert live.exists()
    assert (tmp_path / "scan.seg.nrrd").read_text() == "result"


@pytest.mark.parametrize("task", ["segment", "detect", "analyze"])
def test_an_output_that_cannot_be_a_folder_is_refused_before_any_scan_is_read(tmp_path, task):
    taken = tmp_path / "results.txt"
    taken.write_text("a file where the output folder should be")
    for output in (taken, taken / "below"):
        result = run_cli(task, str(DICOM_SERIES), "-o", str(output), "--progress", "json")
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["event"] for e in events] == ["error"], events  # no progress: nothing was read
        assert result.returncode == 1 and str(output) in events[0]["message"]


def test_a_gpu_out_of_memory_is_one_error_row_and_the_batch_goes_on():
    import torch

    from deepdiag.batch import run_batch
    from deepdiag.progress import ProgressReporter

    def process_one(path, progress):
        if path == "big.nrrd":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return {"input": path}

    results = []
    reporter = ProgressReporter("none")
    reporter.result = results.append
    assert not run_batch(["big.nrrd", "small.nrrd"], process_one, reporter, {})
    assert [o["input"] for o in results[0]["outputs"]] == ["small.nrrd"]
    assert (
        "the GPU ran out of memory" in results[0]["failed"][0]["error"]
        and "--device cpu" in results[0]["failed"][0]["error"]
    )


def test_asking_for_a_gpu_that_is_not_there_says_what_to_do(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the message for a missing one cannot be seen here")
    result = run_cli("segment", str(DICOM_SERIES), "-o", str(tmp_path), "--device", "cuda", "--progress", "none")
    _one_line_error(result, "--device cuda", "--device cpu")


@pytest.fixture
def http_server():
    """A local HTTP server on 127.0.0.1 that records every request it gets."""
    import http.server
    import threading

    requests = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def _card_with(network: dict, task: str = "classification"):
    from deepdiag.models import ModelCard

    return ModelCard(
        id="crafted",
        version=1,
        task=task,
        network=network,
        input={"channels": 1, "spacing_mm": [1.0, 1.0, 1.0]},
        patch_size=[32, 32, 32],
        classes=[],
    )


@pytest.mark.parametrize(
    "name,parameters",
    [
        ("HoVerNet", {"pretrained_url": "{url}/hovernet.pth"}),
        ("SENet154", {"spatial_dims": 3, "in_channels": 1, "num_classes": 2, "pretrained": True}),
        (
            "UNet",
            {
                "spatial_dims": 3,
                "in_channels": 1,
                "out_channels": 2,
                "channels": [4, 8],
                "strides": [2],
                "act": "{url}/x",
            },
        ),
    ],
)
def test_a_card_cannot_make_the_engine_fetch_anything(http_server, name, parameters):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.networks import build_network

    url, requests = http_server
    filled = {k: v.format(url=url) if isinstance(v, str) else v for k, v in parameters.items()}
    with pytest.raises(DeepDiagError, match="refused"):
        build_network(_card_with({"name": name, "parameters": filled}))
    assert requests == []


def test_a_constructor_that_downloads_on_its_own_is_stopped(http_server, monkeypatch):
    import torch.hub

    from deepdiag.errors import DeepDiagError
    from deepdiag.models import networks

    url, requests = http_server

    class Downloads(torch.nn.Module):  # a network whose constructor fetches weights without a parameter saying so
        def __init__(self):
            super().__init__()
            torch.hub.load_state_dict_from_url(f"{url}/weights.pth")

    monkeypatch.setattr(networks, "network_class", lambda name: Downloads)
    with pytest.raises(DeepDiagError, match="tried to download"):
        networks.build_network(_card_with({"name": "Downloads", "parameters": {}}))
    assert requests == []


def test_a_card_asking_for_billions_of_weights_is_refused_before_allocating():
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.networks import build_network

    huge = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [8192, 16384, 32768], "strides": [2, 2]}
    with pytest.raises(DeepDiagError, match="weights; DeepDiag builds at most"):
        build_network(_card_with({"name": "UNet", "parameters": huge}, task="segmentation"))


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_extracting(tmp_path):
    import zipfile

    bomb = tmp_path / "model.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/model.json", "{}")
        archive.writestr("model/weights.safetensors", b"\0" * (64 * 1024**2))  # 64 MB of zeros: about 64 kB packed
    assert bomb.stat().st_size < 1024**2
    models = tmp_path / "models"
    line = _one_line_error(
        run_cli("models", "import", str(bomb), "--progress", "none", env={"DEEPDIAG_MODELS": str(models)}),
        "refused",
        "zip bomb",
    )
    assert "weights.safetensors" in line
    assert not models.exists() or not any(models.iterdir())


def _nrrd(path, directions: str, size=(8, 8, 8)):
    """A raw NRRD with the given space directions (SimpleITK cannot write a sheared one)."""
    header = (
        f"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: {' '.join(map(str, size))}\n"
        f"space directions: {directions}\nencoding: raw\nendian: little\nspace origin: (0,0,0)\n\n"
    )
    path.write_bytes(header.encode() + np.full(size[::-1], -800, "<i2").tobytes())
    return path


@pytest.mark.parametrize(
    "directions,problem",
    [
        ("(1,0,0) (0.5,1,0) (0,0,1)", "sheared image axes"),
        ("(1,0,0) (1,0,0) (0,0,1)", "axes that coincide"),
    ],
)
def test_a_geometry_the_outputs_could_not_keep_is_refused_with_what_it_is(tmp_path, directions, problem):
    path = _nrrd(tmp_path / "scan.nrrd", directions)
    _one_line_error(
        run_cli("segment", str(path), "-o", str(tmp_path / "out"), "--progress", "none"), str(path), problem
    )
    assert not (tmp_path / "out" / "scan.seg.nrrd").exists()


def test_a_pickle_refusal_gives_no_advice_to_load_it_anyway(tmp_path):
    import pickle

    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(
        json.dumps(
            {
                "network_def": {
                    "_target_": "monai.networks.nets.UNet",
                    "spatial_dims": 3,
                    "in_channels": 1,
                    "out_channels": 2,
                    "channels": [4, 8],
                    "strides": [2],
                }
            }
        )
    )

    class Payload:
        def __reduce__(self):
            return (__import__("os").system, ("echo pwned",))

    (bundle / "models" / "model.pt").write_bytes(pickle.dumps({"model": Payload()}))
    line = _one_line_error(
        run_cli(
            "models", "import", str(bundle), "--progress", "none", env={"DEEPDIAG_MODELS": str(tmp_path / "models")}
        ),
        "refused",
        "could run code",
    )
    assert "weights_only" not in line and "pwned" not in line


def test_an_import_error_names_the_users_file_not_a_deleted_temporary_one(tmp_path, tiny_model):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "weights.safetensors").write_bytes(b"not safetensors")
    line = _one_line_error(
        run_cli(
            "models", "import", str(broken), "--progress", "none", env={"DEEPDIAG_MODELS": str(tmp_path / "models")}
        ),
        str(broken),
    )
    assert "deepdiag-import-" not in line


@pytest.mark.parametrize(
    "field,value,named",
    [
        ("classes", "x", "classes"),
        ("input", None, "input"),
        ("patch_size", "abc", "patch_size"),
        ("input", {"spacing_mm": [0, 1, 1]}, "input.spacing_mm"),
        ("network", {"name": "UNet", "parameters": [1, 2]}, "network.parameters"),
    ],
)
def test_a_card_with_fields_of_the_wrong_form_is_refused_at_import_naming_the_field(
    tmp_path, tiny_model, monkeypatch, field, value, named
):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model

    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    with pytest.raises(DeepDiagError, match=f"model card's {re.escape(named)} "):
        import_model(_crafted_copy(tmp_path, tiny_model, **{field: value}))


def test_a_card_field_of_the_wrong_form_is_one_line_from_the_command_line(tmp_path, tiny_model):
    crafted = _crafted_copy(tmp_path, tiny_model, classes="x")
    line = _one_line_error(
        run_cli(
            "models", "import", str(crafted), "--progress", "none", env={"DEEPDIAG_MODELS": str(tmp_path / "models")}
        ),
        "model card's classes",
    )
    assert "internal error" not in line


def _series_copy(tmp_path, drop=(), duplicate=None):
    import shutil

    folder = tmp_path / "series"
    folder.mkdir()
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(DICOM_SERIES))
    for index, path in enumerate(files):
        if index not in drop:
            shutil.copy(path, folder / Path(path).name)
    if duplicate is not None:  # the same slice a second time, under another file name
        shutil.copy(files[duplicate], folder / "duplicate.dcm")
    return folder, files


def test_a_series_with_a_missing_slice_is_refused_naming_the_slice_after_the_gap(tmp_path):
    folder, files = _series_copy(tmp_path, drop=(10,))
    _one_line_error(
        run_cli("info", str(folder), "--progress", "none"), str(folder), "not evenly sliced", Path(files[11]).name
    )


def test_a_series_with_a_duplicate_slice_is_refused(tmp_path):
    folder, _ = _series_copy(tmp_path, duplicate=5)
    _one_line_error(
        run_cli("info", str(folder), "--progress", "none"), str(folder), "not evenly sliced", "repeats the position"
    )


def test_training_labels_with_values_the_model_does_not_know_are_refused_before_training(tmp_path):
    image, labels = tmp_path / "case.nrrd", tmp_path / "case_labels.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((16, 32, 32), -800, np.int16)), str(image))
    values = np.zeros((16, 32, 32), np.uint8)
    values[4:8, 4:8, 4:8] = 7
    sitk.WriteImage(sitk.GetImageFromArray(values), str(labels))
    models = tmp_path / "models"
    result = run_cli(
        "train",
        "--base",
        "lung-nodules-seg",
        "--images",
        str(image),
        "--labels",
        str(labels),
        "--epochs",
        "1",
        "--progress",
        "none",
        env={"DEEPDIAG_MODELS": str(models)},
    )
    _one_line_error(result, str(labels), "label values [7]")
    assert not models.exists() or not any(models.iterdir())


def test_evaluating_against_a_folder_without_truth_says_what_layout_it_expects(tmp_path):
    (tmp_path / "truth").mkdir()
    result = run_cli(
        "evaluate", "detection", "--truth", str(tmp_path / "truth"), "--pred", str(tmp_path), "--progress", "none"
    )
    _one_line_error(result, "holds no truth/*.json", "deepdiag phantom")
