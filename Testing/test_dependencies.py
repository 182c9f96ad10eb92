"""One list of engine requirements, read by pip and by the installer inside Slicer."""

from __future__ import annotations

import re

import pytest
import tomllib
from conftest import PROJECT_ROOT


def test_pip_and_the_slicer_installer_read_the_same_engine_list():
    from DeepDiagLib.dependencies import REQUIREMENTS_FILE, engineRequirements

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert "dependencies" not in pyproject["project"] and "dependencies" in pyproject["project"]["dynamic"]
    listed = pyproject["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    assert [PROJECT_ROOT / f for f in listed] == [REQUIREMENTS_FILE]
    assert (
        f"-r {REQUIREMENTS_FILE.relative_to(PROJECT_ROOT).as_posix()}"
        in (PROJECT_ROOT / "requirements.txt").read_text()
    )
    requirements = engineRequirements()
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(requirements)
    assert "deepdiag/requirements.txt" in (PROJECT_ROOT / "DeepDiag" / "CMakeLists.txt").read_text()


def test_every_package_the_engine_imports_is_on_the_list():
    from DeepDiagLib.dependencies import engineRequirements, importName

    listed = {importName(r) for r in engineRequirements()}
    imported = set()
    for path in (PROJECT_ROOT / "DeepDiag" / "deepdiag").rglob("*.py"):
        imported |= set(re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.MULTILINE))
    third_party = {
        name
        for name in imported
        if name
        in {
            "torch",
            "torchvision",
            "monai",
            "SimpleITK",
            "safetensors",
            "numpy",
            "scipy",
            "PIL",
            "h5py",
            "pydicom",
            "highdicom",
        }
    }
    assert third_party <= listed, f"imported but not listed: {third_party - listed}"
    assert listed <= third_party, f"listed but never imported: {listed - third_party}"


def test_the_installer_refuses_slicer_5_6s_python_with_what_to_do():
    from DeepDiagLib.dependencies import checkPythonVersion

    with pytest.raises(RuntimeError, match=r"Slicer 5.8 or later.*3\.9"):
        checkPythonVersion((3, 9))
    checkPythonVersion((3, 12))
