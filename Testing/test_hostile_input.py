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

# deepdiag analyze on a DICOM folder (the real series, through a PACS) is tested in test_pacs.py; here the
# other two commands take the folder, with small models: what is tested is the reading and the output grid.


def test_segment_takes_a_dicom_folder_and_writes_on_its_grid(tmp_path, background_model):
    result = run_cli("segment", str(DICOM_SERIES), "-o", str(tmp_path), "--model", str(background_model),
                     "--progress", "none", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = sitk.ReadImage(str(tmp_path / "abdomen_ct_dicom.seg.nrrd"))
    source = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(DICOM_SERIES)))
    assert written.GetSize() == source.GetSize() == (512, 512, 20)
    assert written.GetSpacing() == pytest.approx(source.GetSpacing())
    assert written.GetOrigin() == pytest.approx(source.GetOrigin())
    assert written.GetDirection() == pytest.approx(source.GetDirection())


def test_detect_takes_a_dicom_folder(tmp_path, tiny_detector):
    result = run_cli("detect", str(DICOM_SERIES), "-o", str(tmp_path), "--model", str(tiny_detector),
                     "--progress", "none", timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    findings = json.loads((tmp_path / "abdomen_ct_dicom.findings.json").read_text())
    assert findings["input"] == str(DICOM_SERIES)


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


@pytest.mark.parametrize("task", ["segment", "detect", "analyze"])
def test_a_batch_of_only_unreadable_inputs_is_refused_by_name_before_any_model_loads(tmp_path, task):
    import subprocess
    import sys

    from conftest import PROJECT_ROOT, cli_env

    notes = tmp_path / "notes.nrrd"
    notes.write_text("these are notes, not an image\n")
    inputs = [str(tmp_path / "absent.nrrd"), str(notes)]
    # the command in this process, then whether it imported torch (which every model load needs)
    script = (
        "import sys; from deepdiag.cli import main; code = main(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, task, *inputs, "-o", str(tmp_path / "out"), "--progress", "json"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=cli_env(), timeout=300,
    )  # fmt: skip
    *event_lines, torch_loaded = result.stdout.splitlines()
    events = [json.loads(line) for line in event_lines]
    assert result.returncode == 1 and torch_loaded == "False"
    assert [(e["path"], e["message"].split(": ", 1)[1]) for e in events if e["event"] == "error"] == [
        (inputs[0], "no such file or folder"),
        (inputs[1], "not a readable image (unknown format or corrupt header)"),
    ]
    assert [f["input"] for f in events[-1]["failed"]] == inputs and events[-1]["outputs"] == []


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


# A NIfTI header holds the voxel size twice: pixdim (which ITK reads as the spacing) and the
# lengths of the sform's axes. SimpleITK writes both alike; the offsets are NIfTI-1's.
_PIXDIM_3, _SROW_Z_3, _QFORM_CODE, _SFORM_CODE = 88, 320, 252, 254


def _nifti(path: Path, spacing=(1.0, 1.0, 2.0)) -> Path:
    image = sitk.GetImageFromArray(np.full((8, 8, 8), -800, np.int16))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def _patched(path: Path, *fields: tuple[int, str, float]) -> Path:
    """Write new values into a .nii or .nii.gz header: (offset, struct format, value) each."""
    import gzip
    import struct

    packed = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if packed else path.read_bytes())
    for offset, form, value in fields:
        struct.pack_into(form, raw, offset, value)
    path.write_bytes(gzip.compress(bytes(raw)) if packed else bytes(raw))
    return path


def test_a_nifti_whose_pixdim_and_sform_disagree_is_refused_by_segment_naming_both(tmp_path, tiny_model):
    # failed before: SimpleITK read it with pixdim's 2 mm and dropped the sform's 3 mm, without a word
    path = _patched(_nifti(tmp_path / "scan.nii.gz"), (_SROW_Z_3, "<f", 3.0))
    out = tmp_path / "out"
    result = run_cli("segment", str(path), "-o", str(out), "--model", str(tiny_model), "--progress", "none")
    _one_line_error(
        result,
        str(path),
        "its header gives two voxel sizes, pixdim 1.0 x 1.0 x 2.0 mm and sform 1.0 x 1.0 x 3.0 mm",
        "refusing rather than guessing",
    )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "name,fields,problem",
    [
        ("pixdim.nii.gz", [(_PIXDIM_3, "<f", 3.0)], "pixdim 1.0 x 1.0 x 3.0 mm and sform 1.0 x 1.0 x 2.0 mm"),
        ("sform_only.nii", [(_SROW_Z_3, "<f", 2.5), (_QFORM_CODE, "<h", 0)], "and sform 1.0 x 1.0 x 2.5 mm"),
        ("zero.nii.gz", [(_PIXDIM_3, "<f", 0.0)], "pixdim 1.0 x 1.0 x 0.0 mm and sform 1.0 x 1.0 x 2.0 mm"),
        ("zero_no_sform.nii.gz", [(_PIXDIM_3, "<f", 0.0), (_SFORM_CODE, "<h", 0)], "not positive (pixdim 1, 1, 0"),
        ("negative.nii.gz", [(_PIXDIM_3, "<f", -2.0), (_SFORM_CODE, "<h", 0)], "not positive (1, 1, -2 mm)"),
    ],
)
def test_a_nifti_header_that_gives_no_single_voxel_size_is_refused(tmp_path, name, fields, problem):
    from deepdiag.errors import DeepDiagError
    from deepdiag.image_io import read_volume, volume_header

    path = _patched(_nifti(tmp_path / name), *fields)
    for read in (volume_header, read_volume):  # the header check too: segment sizes its memory from it
        with pytest.raises(DeepDiagError, match=re.escape(problem)) as refused:
            read(path)
        assert str(path) in str(refused.value)


def test_a_nifti_whose_two_voxel_sizes_agree_reads_with_its_geometry(tmp_path, oblique_volume, shared_data):
    from deepdiag.image_io import read_volume, volume_header, write_volume

    for name in ("oblique.nii.gz", "oblique.nii"):
        volume = read_volume(write_volume(oblique_volume, tmp_path / name))
        assert volume.spacing == pytest.approx(oblique_volume.spacing, rel=1e-6)
        assert volume.origin == pytest.approx(oblique_volume.origin, abs=1e-3)
        assert np.array_equal(volume.array, oblique_volume.array)
    # a writer's rounding (0.2 %) is no second voxel size
    rounded = _patched(_nifti(tmp_path / "rounded.nii.gz"), (_SROW_Z_3, "<f", 2.004))
    assert read_volume(rounded).spacing == pytest.approx((1.0, 1.0, 2.0))
    # and every real NIfTI of the shared data still reads
    scans = sorted(shared_data.rglob("*.nii.gz"))
    assert len(scans) > 10 and all(volume_header(scan) for scan in scans)


def _truncated(tmp_path, name: str) -> Path:
    """A valid 8x8x8 file with its last 200 bytes of voxel data cut off (for a .gz: cut before packing)."""
    import gzip

    path = tmp_path / name
    whole = tmp_path / f"whole{name[name.index('.') :].replace('.gz', '')}"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(512, dtype=np.int16).reshape(8, 8, 8)), str(whole), False)
    cut = whole.read_bytes()[:-200]
    path.write_bytes(gzip.compress(cut) if name.endswith(".gz") else cut)
    return path


@pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz", "scan.nrrd", "scan.mha"])
def test_a_truncated_file_is_refused_not_read_with_the_missing_voxels_as_zero(tmp_path, name):
    # failed before for NIfTI: ITK filled the missing voxels with 0 and the read succeeded
    path = _truncated(tmp_path, name)
    _one_line_error(run_cli("info", str(path), "--progress", "none"), str(path), "truncated")


def test_a_nifti_cut_inside_its_gzip_stream_is_refused_saying_how_much_is_there(tmp_path):
    whole = tmp_path / "whole.nii.gz"
    noise = np.random.default_rng(0).integers(-1000, 1000, (8, 8, 8)).astype(np.int16)  # packs to about 1 kB
    sitk.WriteImage(sitk.GetImageFromArray(noise), str(whole))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(whole.read_bytes()[:-40])  # the end of the deflate stream and its trailer are gone
    _one_line_error(run_cli("info", str(cut), "--progress", "none"), str(cut), "ends early", "of 1,376 bytes")


def test_an_analyze_pair_whose_img_is_short_is_refused_naming_the_img(tmp_path):
    from deepdiag.errors import DeepDiagError
    from deepdiag.image_io import read_volume

    header = tmp_path / "scan.hdr"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(header))
    data = tmp_path / "scan.img"
    data.write_bytes(data.read_bytes()[:-200])
    with pytest.raises(DeepDiagError, match="voxel data in scan.img ends early"):
        read_volume(header)


@pytest.mark.parametrize("name", ["empty.nrrd", "empty.nii.gz", "empty.mha"])
def test_an_empty_file_is_one_line_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _one_line_error(run_cli("info", str(path), "--progress", "none"), str(path), "not a readable image")


def test_a_volume_of_one_slice_is_refused_as_a_single_slice(tmp_path):
    path = tmp_path / "one.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((1, 16, 16), -800, np.int16)), str(path))
    _one_line_error(run_cli("info", str(path), "--progress", "none"), str(path), "is a single slice (16x16x1 voxels)")


def test_a_looping_or_dangling_link_is_named_as_such(tmp_path):
    import os

    os.symlink(tmp_path / "b.nrrd", tmp_path / "a.nrrd")
    os.symlink(tmp_path / "a.nrrd", tmp_path / "b.nrrd")
    os.symlink(tmp_path / "gone.nrrd", tmp_path / "dangling.nrrd")
    for link in (tmp_path / "a.nrrd", tmp_path / "dangling.nrrd"):
        _one_line_error(run_cli("info", str(link), "--progress", "none"), str(link), "symbolic link to nothing")


def test_a_scan_with_a_unicode_name_reads_and_is_named_in_its_errors(tmp_path):
    scan = tmp_path / "Müller_Ørsted_肺.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((8, 8, 8), -800, np.int16)), str(scan))
    result = run_cli("info", str(scan), "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input"] == str(scan)
    broken = tmp_path / "Ünlü_скан.nii.gz"
    broken.write_bytes(b"not an image")
    _one_line_error(run_cli("info", str(broken), "--progress", "none"), str(broken), "not a readable image")


def test_a_negative_spacing_is_refused_as_not_positive(tmp_path):
    path = tmp_path / "negative.mha"
    header = "ObjectType = Image\nNDims = 3\nDimSize = 8 8 8\nElementSpacing = 1 -1 1\nElementType = MET_SHORT\n"
    path.write_bytes((header + "ElementDataFile = LOCAL\n").encode() + np.zeros(512, "<i2").tobytes())
    _one_line_error(run_cli("info", str(path), "--progress", "none"), str(path), "not positive (1, -1, 1 mm)")


def _zip_with(path: Path, model_folder: Path, name: str, data: bytes = b"x", link: bool = False) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for file in model_folder.iterdir():
            archive.write(file, f"model/{file.name}")
        entry = zipfile.ZipInfo(name)
        if link:
            entry.external_attr = 0o120777 << 16  # a symbolic link, its target as the data
        archive.writestr(entry, data)
    return path


@pytest.mark.parametrize(
    "entry,link,problem",
    [
        ("../outside.txt", False, "would be written outside the import folder"),
        ("{tmp}/absolute.txt", False, "would be written outside the import folder"),
        ("..\\outside.txt", False, "would be written outside the import folder"),
        ("C:\\outside.txt", False, "would be written outside the import folder"),
        ("model/notes.txt", True, "is a link"),
    ],
)
def test_a_zip_entry_that_would_land_outside_or_link_out_is_refused(
    tmp_path, tiny_model, monkeypatch, entry, link, problem
):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model

    entry = entry.format(tmp=tmp_path)
    archive = _zip_with(tmp_path / "model.zip", tiny_model, entry, b"/etc/passwd" if link else b"x", link)
    models = tmp_path / "models"
    monkeypatch.setenv("DEEPDIAG_MODELS", str(models))
    with pytest.raises(DeepDiagError) as refused:
        import_model(archive)
    assert str(refused.value) == f"{archive}: refused: the archive entry {entry!r} {problem}"
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "absolute.txt").exists()
    assert not models.exists() or not any(models.iterdir())


class _TouchesWhenUnpickled:
    marker = ""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _bundle_with_weights(folder: Path, write) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    network = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2}
    (folder / "configs" / "inference.json").write_text(
        json.dumps({"network_def": {**network, "channels": [4, 8], "strides": [2]}})
    )
    write(folder / "models" / "model.pt")
    return folder


def _torchscript_with_payload(path: Path, payload) -> Path:
    """A real TorchScript archive whose data.pkl is replaced by a pickle that runs code."""
    import pickle
    import warnings
    import zipfile

    import torch

    scripted = path.with_name("scripted.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Conv3d(1, 2, 1)), str(scripted))
    with zipfile.ZipFile(scripted) as source, zipfile.ZipFile(path, "w") as crafted:
        for name in source.namelist():
            crafted.writestr(
                name, pickle.dumps(payload, protocol=2) if name.endswith("/data.pkl") else source.read(name)
            )
    return path


@pytest.mark.parametrize(
    "wrapping",
    ["legacy torch.save", "tensors beside the payload", "zipped bundle", "TorchScript data.pkl", "as safetensors"],
)
def test_a_pickle_payload_never_runs_in_any_wrapping_and_the_line_names_the_users_file(
    tmp_path, tiny_model, monkeypatch, wrapping
):
    import hashlib
    import shutil

    import torch

    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model

    marker = tmp_path / "payload-ran"
    payload = _TouchesWhenUnpickled()
    monkeypatch.setattr(_TouchesWhenUnpickled, "marker", str(marker))
    if wrapping == "legacy torch.save":
        source = _bundle_with_weights(
            tmp_path / "b", lambda p: torch.save({"model": payload}, p, _use_new_zipfile_serialization=False)
        )
    elif wrapping == "tensors beside the payload":
        source = _bundle_with_weights(tmp_path / "b", lambda p: torch.save({"w": torch.zeros(2), "x": payload}, p))
    elif wrapping == "zipped bundle":  # failed before: the line named the deleted temporary folder
        _bundle_with_weights(tmp_path / "b", lambda p: torch.save({"model": payload}, p))
        source = Path(shutil.make_archive(str(tmp_path / "bundle"), "zip", tmp_path, "b"))
    elif wrapping == "TorchScript data.pkl":  # failed before: the reason was empty, "()"
        source = _torchscript_with_payload(tmp_path / "model.pt", payload)
    else:  # a model folder whose weights.safetensors is a pickle, its checksum in the card
        import pickle

        source = tmp_path / "folder"
        shutil.copytree(tiny_model, source)
        (source / "weights.safetensors").write_bytes(pickle.dumps({"model": payload}))
        card = json.loads((source / "model.json").read_text())
        card["weights_sha256"] = hashlib.sha256((source / "weights.safetensors").read_bytes()).hexdigest()
        (source / "model.json").write_text(json.dumps(card))
    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    with pytest.raises(DeepDiagError) as refused:
        import_model(source)
    message = str(refused.value)
    assert message.startswith(str(source)) and "deepdiag-import-" not in message
    assert "()" not in message and "weights_only" not in message
    assert not marker.exists()
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def _folder_with_weights(tmp_path: Path, model_folder: Path, weights: bytes) -> Path:
    """A copy of a model folder with other weights, their checksum written into the card."""
    import hashlib
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(model_folder, crafted)
    (crafted / "weights.safetensors").write_bytes(weights)
    card = json.loads((crafted / "model.json").read_text())
    card["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    (crafted / "model.json").write_text(json.dumps(card))
    return crafted


@pytest.mark.parametrize("declared", [2**62, 90_000_000])
def test_a_safetensors_header_of_absurd_length_is_refused_before_allocating(tmp_path, tiny_model, declared):
    import struct

    from deepdiag.errors import DeepDiagError
    from deepdiag.models.store import load_model

    crafted = _folder_with_weights(tmp_path, tiny_model, struct.pack("<Q", declared) + b'{"a": 1}')
    with pytest.raises(DeepDiagError, match="cannot read the weights .*header") as refused:
        load_model(crafted)
    assert str(crafted / "weights.safetensors") in str(refused.value)


def test_checksum_valid_weights_of_another_shape_are_refused_at_import_and_at_load(tmp_path, tiny_model, monkeypatch):
    from monai.networks.nets import UNet
    from safetensors.torch import save

    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model
    from deepdiag.models.store import load_model

    wider = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=[8, 16], strides=[2])  # the card says [4, 8]
    crafted = _folder_with_weights(
        tmp_path, tiny_model, save({k: v.contiguous() for k, v in wider.state_dict().items()})
    )
    with pytest.raises(DeepDiagError, match="the weights do not fit the network its card describes"):
        load_model(crafted)
    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    with pytest.raises(DeepDiagError, match="the weights do not fit") as refused:
        import_model(crafted)
    assert str(crafted) in str(refused.value)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize(
    "name",
    ["__import__", "os.system", "builtins.eval", "subprocess.Popen", "monai.networks.nets.os", "torch.nn.Module"],
)
def test_a_card_naming_anything_but_a_monai_network_is_refused(name):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.networks import build_network

    with pytest.raises(DeepDiagError, match=f"{re.escape(repr(name))} is not a network of monai.networks.nets"):
        build_network(_card_with({"name": name, "parameters": {}}, task="segmentation"))


@pytest.mark.parametrize("parameter", ["act", "channels"])
def test_an_expression_in_a_card_parameter_is_never_evaluated(tmp_path, parameter):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.networks import build_network

    marker = tmp_path / "expression-ran"
    parameters = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8], "strides": [2]}
    parameters[parameter] = f"$__import__('os').system('touch {marker}')"
    with pytest.raises(DeepDiagError, match="refused|cannot build UNet"):
        build_network(_card_with({"name": "UNet", "parameters": parameters}, task="segmentation"))
    assert not marker.exists()


_WRITER = """
import sys
import numpy as np
from deepdiag.geometry import Volume
from deepdiag.segmentation_file import write_segmentation
from deepdiag.terminology import LUNG_NODULES, LUNGS

labels = np.full((16, 16, 16), int(sys.argv[2]), np.uint8)
for _ in range(25):
    write_segmentation(sys.argv[1], Volume(labels, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3)), [LUNGS, LUNG_NODULES])
"""


def test_two_runs_writing_the_same_output_at_once_leave_one_whole_result_and_no_partial_file(tmp_path):
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    from deepdiag.segmentation_file import read_segmentation

    output = tmp_path / "out" / "scan.seg.nrrd"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(output), str(value)],
            env={"PYTHONPATH": str(PROJECT_ROOT / "DeepDiag"), "PATH": "/usr/bin:/bin"},
            stderr=subprocess.PIPE,
            text=True,
        )
        for value in (1, 2)
    ]
    for run in runs:  # each run's clean-up of abandoned partial files must spare the other's live one
        _, errors = run.communicate(timeout=120)
        assert run.returncode == 0, errors
    labels, segments = read_segmentation(output)
    assert np.unique(labels.array).tolist() in ([1], [2]) and [s["Name"] for s in segments] == ["Lungs", "Lung nodules"]
    assert [p.name for p in output.parent.iterdir()] == ["scan.seg.nrrd"]


def test_an_empty_training_folder_is_refused_before_training(tmp_path, tiny_model, monkeypatch):
    import torch

    from deepdiag.errors import DeepDiagError
    from deepdiag.training.fine_tune import FineTuneOptions, fine_tune

    empty = tmp_path / "cases"
    empty.mkdir()
    monkeypatch.setenv("DEEPDIAG_MODELS", str(tmp_path / "models"))
    with pytest.raises(DeepDiagError, match="holds no DICOM series") as refused:
        fine_tune(str(tiny_model), [str(empty)], [str(empty)], FineTuneOptions(epochs=1), torch.device("cpu"))
    assert str(empty) in str(refused.value)
    assert not (tmp_path / "models").exists()


@pytest.fixture
def truth_case(tmp_path):
    """A phantom-like truth folder of one 16-voxel case, and its grid."""
    from deepdiag.geometry import Volume
    from deepdiag.image_io import write_volume

    labels = np.zeros((16, 16, 16), np.uint8)
    labels[2:14, 2:14, 2:14] = 1
    labels[6:10, 6:10, 6:10] = 2
    grid = Volume(labels, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    truth = tmp_path / "truth"
    write_volume(grid, truth / "labels" / "c.nrrd")
    write_volume(grid.with_array((labels == 2).astype(np.uint8)), truth / "instances" / "c.nrrd")
    (truth / "truth").mkdir()
    nodule = {
        "id": 1,
        "equivalent_diameter_mm": 5.0,
        "center_lps": [7.5, 7.5, 7.5],
        "long_axis_diameter_mm": 5.0,
        "type": "solid",
        "lung_rads": "2",
    }
    (truth / "truth" / "c.json").write_text(json.dumps({"nodules": [nodule]}))
    return truth, grid


@pytest.mark.parametrize(
    "origin,direction,problem",
    [
        ((5.0, 0.0, 0.0), np.eye(3), "its origin lies 5 mm from the truth's"),
        ((0.0, 0.0, 0.0), np.diag([-1.0, -1.0, 1.0]), "its image axes point in other directions"),
    ],
)
def test_evaluating_a_prediction_on_another_grid_of_the_same_size_is_refused(
    tmp_path, truth_case, origin, direction, problem
):
    # failed before: a prediction of the truth's size was compared voxel by voxel whatever its grid
    from deepdiag.geometry import Volume
    from deepdiag.segmentation_file import write_segmentation
    from deepdiag.terminology import LUNG_NODULES, LUNGS

    truth, grid = truth_case
    prediction = tmp_path / "pred" / "c.seg.nrrd"
    write_segmentation(prediction, Volume(grid.array, grid.spacing, origin, direction), [LUNGS, LUNG_NODULES])
    result = run_cli(
        "evaluate", "segmentation", "--truth", str(truth), "--pred", str(prediction.parent), "--progress", "none"
    )
    _one_line_error(result, str(prediction), "not on the truth's grid", problem)


def test_evaluating_a_prediction_with_unknown_label_values_is_refused(tmp_path, truth_case):
    # failed before: values 3 and 6 counted as lung and as no nodule, and the figures came out
    from deepdiag.image_io import write_volume

    truth, grid = truth_case
    prediction = write_volume(grid.with_array(grid.array * 3), tmp_path / "pred" / "c.seg.nrrd")
    result = run_cli(
        "evaluate", "segmentation", "--truth", str(truth), "--pred", str(prediction.parent), "--progress", "none"
    )
    _one_line_error(result, str(prediction), "holds label values [3, 6]")


@pytest.mark.parametrize("what", ["detection", "classification"])
@pytest.mark.parametrize(
    "text,problem",
    [
        ("{ not json", "JSONDecodeError"),
        ("[]", "TypeError"),
        (json.dumps({"findings": [{"id": 1}]}), "KeyError: 'center_lps'"),
    ],
)
def test_evaluating_findings_that_are_no_findings_file_is_one_line(tmp_path, truth_case, what, text, problem):
    # failed before: "internal error: JSONDecodeError" with exit code 3
    truth, _ = truth_case
    findings = tmp_path / "pred" / "c.findings.json"
    findings.parent.mkdir()
    findings.write_text(text)
    result = run_cli("evaluate", what, "--truth", str(truth), "--pred", str(findings.parent), "--progress", "none")
    _one_line_error(result, str(findings), "not a findings file as deepdiag detect writes", problem)


def test_evaluating_against_a_truth_file_that_is_not_json_names_it(tmp_path, truth_case):
    truth, _ = truth_case
    (truth / "truth" / "c.json").write_text("nodules: 1")
    findings = tmp_path / "pred" / "c.findings.json"
    findings.parent.mkdir()
    findings.write_text(json.dumps({"findings": []}))
    result = run_cli(
        "evaluate", "detection", "--truth", str(truth), "--pred", str(findings.parent), "--progress", "none"
    )
    _one_line_error(result, str(truth / "truth" / "c.json"), "not a truth file as deepdiag phantom writes")
