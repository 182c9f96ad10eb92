"""deepdiag models: listing, importing (model folders, MONAI bundles, zips, TorchScript), removing,
and refusing what could run code or write outside its folder."""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import pytest
import torch
from conftest import run_cli

SMALL_UNET = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2]}


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    folder = tmp_path / "user-models"
    monkeypatch.setenv("DEEPDIAG_MODELS", str(folder))
    return folder


def _models(*arguments, folder):
    return run_cli("models", *map(str, arguments), env={"DEEPDIAG_MODELS": str(folder)})


def _bundle(folder, state_dict_file_writer=None, network_def=None):
    """A MONAI bundle folder as the Model Zoo lays it out, holding a small UNet."""
    from monai.networks.nets import UNet

    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    network_def = network_def or {"_target_": "UNet", **SMALL_UNET}
    (folder / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def}))
    (folder / "configs" / "metadata.json").write_text(json.dumps({"name": "Spleen CT test", "version": "0.1.0"}))
    torch.manual_seed(1)
    network = UNet(**SMALL_UNET)
    if state_dict_file_writer:
        state_dict_file_writer(folder / "models" / "model.pt")
    else:
        torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder, network


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_list_shows_the_built_in_model_and_its_figures(user_models):
    result = _models("list", "--progress", "json", folder=user_models)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout.splitlines()[-1])["models"]
    builtin = [r for r in rows if r["id"].startswith("lung-nodules-seg@")]
    assert builtin and all(r["source"] == "built-in" and r["task"] == "segmentation" for r in builtin)
    assert all("nodule_dice_ge6mm" in r["metrics"] for r in builtin)


def test_import_installs_a_new_version_and_never_overwrites(user_models, tiny_model):
    first = _models("import", tiny_model, "--progress", "none", folder=user_models)
    assert first.returncode == 0, first.stderr
    installed = user_models / "tiny-test-seg@1"
    assert (installed / "model.json").is_file()
    before = (installed / "weights.safetensors").read_bytes()

    again = _models("import", tiny_model, folder=user_models)
    assert again.returncode == 1 and "already installed" in again.stderr and "--version 2" in again.stderr
    assert (installed / "weights.safetensors").read_bytes() == before

    second = _models("import", tiny_model, "--version", "2", "--progress", "none", folder=user_models)
    assert second.returncode == 0, second.stderr
    shown = json.loads(_models("show", "tiny-test-seg", "--progress", "none", folder=user_models).stdout)
    assert shown["version"] == 2  # a bare id means the newest


def test_remove_deletes_a_user_model_but_never_a_built_in_one(user_models, tiny_model):
    from deepdiag.models.registry import BUILTIN_MODELS

    assert _models("import", tiny_model, folder=user_models).returncode == 0
    removed = _models("remove", "tiny-test-seg@1", folder=user_models)
    assert removed.returncode == 0, removed.stderr
    assert not (user_models / "tiny-test-seg@1").exists()
    builtin = sorted(p.name for p in BUILTIN_MODELS.iterdir())[0]
    refused = _models("remove", builtin, folder=user_models)
    assert refused.returncode == 1 and "built into DeepDiag" in refused.stderr
    assert (BUILTIN_MODELS / builtin / "weights.safetensors").is_file()


def test_a_model_with_altered_weights_is_refused_at_import_naming_model_and_checksum(tmp_path, user_models, tiny_model):
    altered = tmp_path / "altered"
    shutil.copytree(tiny_model, altered)
    data = bytearray((altered / "weights.safetensors").read_bytes())
    data[-3] ^= 0x55
    (altered / "weights.safetensors").write_bytes(bytes(data))
    result = _models("import", altered, folder=user_models)
    assert result.returncode == 1
    assert "tiny-test-seg@1" in result.stderr and "SHA-256" in result.stderr and "Traceback" not in result.stderr
    assert not user_models.exists() or not any(user_models.iterdir())


def test_a_monai_bundle_becomes_a_registry_model_with_the_same_outputs(tmp_path, user_models):
    from deepdiag.models.importers import import_model
    from deepdiag.models.store import load_model

    bundle, network = _bundle(tmp_path / "spleen_ct_test")
    folder = import_model(bundle)
    assert folder == user_models / "spleen-ct-test@1"
    loaded = load_model(folder)
    assert "input.spacing_mm" in loaded.card.extra["to_complete"]  # the user is told what to fill in
    sample = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.network(sample), network.eval()(sample), atol=1e-5)


def test_a_zipped_bundle_imports_like_the_folder(tmp_path, user_models):
    from deepdiag.models.importers import import_model

    bundle, _ = _bundle(tmp_path / "zipped" / "my_bundle")
    archive = shutil.make_archive(str(tmp_path / "my_bundle"), "zip", tmp_path / "zipped")
    folder = import_model(archive, model_id="from-zip")
    assert (folder / "weights.safetensors").is_file() and folder.name == "from-zip@1"


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, user_models):
    marker = tmp_path / "payload-ran"
    bundle, _ = _bundle(
        tmp_path / "evil_bundle", lambda path: torch.save({"model": _RunsCodeWhenUnpickled(marker)}, path)
    )
    result = _models("import", bundle, folder=user_models)
    assert result.returncode == 1
    assert "refused" in result.stderr and "model.pt" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
    assert not user_models.exists() or not any(user_models.iterdir())


def test_a_bundle_whose_network_is_an_expression_is_refused(tmp_path, user_models):
    from deepdiag.errors import DeepDiagError
    from deepdiag.models.importers import import_model

    bundle, _ = _bundle(
        tmp_path / "expr", network_def={"_target_": "UNet", **SMALL_UNET, "channels": "$__import__('os').getcwd()"}
    )
    with pytest.raises(DeepDiagError, match="expressions or references"):
        import_model(bundle)
    other, _ = _bundle(tmp_path / "target", network_def={"_target_": "os.system", "command": "true"})
    with pytest.raises(DeepDiagError, match="monai.networks.nets"):
        import_model(other)


def test_a_zip_with_entries_escaping_the_folder_is_refused(tmp_path, user_models):
    archive = tmp_path / "escape.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("model/model.json", "{}")
        bundle.writestr("../outside.txt", "should never be written")
    result = _models("import", archive, folder=user_models)
    assert result.returncode == 1 and "outside the import folder" in result.stderr
    assert not (tmp_path / "outside.txt").exists()
    assert not user_models.exists() or not any(user_models.iterdir())


def test_a_torchscript_file_is_imported_and_runs(tmp_path, user_models):
    from monai.networks.nets import UNet

    from deepdiag.models.importers import import_model
    from deepdiag.models.store import load_model

    torch.manual_seed(2)
    network = UNet(**SMALL_UNET).eval()
    torch.jit.save(torch.jit.script(network), str(tmp_path / "scripted_unet.ts"))
    loaded = load_model(import_model(tmp_path / "scripted_unet.ts"))
    assert loaded.card.full_id == "scripted-unet@1"
    sample = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.network(sample), network(sample), atol=1e-5)


def test_folders_being_written_or_removed_are_never_listed(user_models, tiny_model):
    from deepdiag.models.registry import model_folders

    user_models.mkdir()
    shutil.copytree(tiny_model, user_models / ".tiny-test-seg@3.k2j4")  # as a killed import or training leaves it
    shutil.copytree(tiny_model, user_models / "tiny-test-seg@2")
    assert [f.name for f in model_folders() if f.parent == user_models] == ["tiny-test-seg@2"]


def test_only_the_default_versions_and_what_they_name_ship_as_weights():
    """Superseded versions are reproducible from their cards in docs/models/cards and the training
    scripts; the extension carries the defaults and the candidate filters their cards name."""
    from deepdiag.models.card import ModelCard
    from deepdiag.models.registry import BUILTIN_MODELS
    from deepdiag.segmentation.candidate_filter import named_filters

    shipped = {p.name: ModelCard.read(p) for p in BUILTIN_MODELS.iterdir() if p.is_dir()}
    newest = {}
    for card in shipped.values():
        newest[card.id] = max(newest.get(card.id, 0), card.version)
    named = {name for card in shipped.values() for name in named_filters(card.postprocessing)}
    assert set(shipped) == {f"{i}@{v}" for i, v in newest.items()} | named
    assert sum(f.stat().st_size for f in BUILTIN_MODELS.rglob("*") if f.is_file()) < 20 * 1024**2
    archived = {p.stem for p in (BUILTIN_MODELS.parents[3] / "docs" / "models" / "cards").glob("*.json")}
    assert archived and not archived & set(shipped)


def test_figures_recorded_later_keep_the_cards_other_figures(tmp_path, tiny_model):
    """Two evaluations recording into one card (phantoms, then real scans, or both at once) each
    keep what the other wrote; a figure measured again replaces only itself."""
    from deepdiag.models.card import ModelCard
    from deepdiag.models.store import record_metrics

    folder = shutil.copytree(tiny_model, tmp_path / "tiny-test-seg@1")
    before = ModelCard.read(folder).metrics
    record_metrics(folder, real_scans={"untouched": 3})  # a real-scan run
    record_metrics(folder, sensitivity_ge6mm=0.9)  # a phantom run, after it or at the same time
    record_metrics(folder, sensitivity_ge6mm=0.95)  # measured again
    assert ModelCard.read(folder).metrics == {**before, "sensitivity_ge6mm": 0.95, "real_scans": {"untouched": 3}}
