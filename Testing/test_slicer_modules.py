"""The Slicer modules are consistent with their .ui files, CMake lists and layering rules.

The full Slicer application cannot run here, so these checks read the module sources; the
behaviour behind the widgets is tested through the bridge on a real MRML scene.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT
from PIL import Image

MODULES = ["DeepDiag", "DeepDiagSegment", "DeepDiagDetect"]
#: widgets the shared base widgets (DeepDiagGUI) reach in a module's .ui
SHARED_WIDGETS = {
    "EngineModuleWidget": {"progressBar", "statusLabel", "cancelButton"},
    "ModelModuleWidget": {"progressBar", "statusLabel", "cancelButton", "modelSelector"},
}


def _ui_tree(module: str) -> ElementTree.Element:
    return ElementTree.parse(PROJECT_ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()


def _ui_widget_names(module: str) -> set[str]:
    return {w.get("name") for w in _ui_tree(module).iter("widget")}


def _module_source(module: str) -> str:
    return (PROJECT_ROOT / module / f"{module}.py").read_text()


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_the_code_uses_exists_in_the_ui_file(module):
    source = _module_source(module)
    base = re.search(r"class \w+Widget\((\w+)\)", source).group(1)
    used = set(re.findall(r"self\.ui\.(\w+)", source)) | SHARED_WIDGETS[base]
    missing = used - _ui_widget_names(module)
    assert not missing, f"{module}.py uses widgets that {module}.ui lacks: {sorted(missing)}"


@pytest.mark.parametrize("module", MODULES)
def test_every_bound_widget_names_a_parameter_of_the_module(module):
    bound = {
        prop.find("string").text
        for prop in _ui_tree(module).iter("property")
        if prop.get("name") == "SlicerParameterName"
    }
    tree = ast.parse(_module_source(module))
    parameter_class = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == f"{module}ParameterNode"
    )
    fields = {item.target.id for item in parameter_class.body if isinstance(item, ast.AnnAssign)}
    assert bound, f"{module}.ui binds no widget to the parameter node"
    assert bound <= fields, f"{module}.ui binds unknown parameters: {sorted(bound - fields)}"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_python_file_and_resource_of_the_module(module):
    folder = PROJECT_ROOT / module
    cmake = (folder / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"^\s+([\w./@-]+\.(?:py|ui|png|json|safetensors|txt))\s*$", cmake, re.MULTILINE))
    present = {
        path.relative_to(folder).as_posix()
        for pattern in (
            "**/*.py",
            "Resources/**/*.ui",
            "Resources/**/*.png",
            "deepdiag/requirements.txt",
            "deepdiag/models/builtin/*/*",
        )
        for path in folder.glob(pattern)
        if "__pycache__" not in path.parts
    }
    assert listed == present, f"not listed: {sorted(present - listed)}; listed but absent: {sorted(listed - present)}"
    assert "slicerMacroBuildScriptedModule" in cmake
    # the module's self-test runs as a ctest, as in Slicer's scripted-module template
    assert re.search(
        r"if\(BUILD_TESTING\)\s+(#.*\s+)*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", cmake
    )


def test_extension_cmake_adds_every_module():
    cmake = (PROJECT_ROOT / "CMakeLists.txt").read_text()
    assert re.findall(r"add_subdirectory\((\w+)\)", cmake) == MODULES
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_DESCRIPTION", "EXTENSION_DEPENDS"):
        assert f"set({field} " in cmake
    screenshots = re.search(r'set\(EXTENSION_SCREENSHOTURLS "([^"]*)"\)', cmake).group(1).split()
    assert screenshots and all(
        PROJECT_ROOT.joinpath(*url.split("/main/", 1)[1].split("/")).is_file() for url in screenshots
    )
    # the Extensions Index wants contributors as "Name (Organization)"
    assert re.fullmatch(
        r"[^(),]+ \([^()]+\)(, [^(),]+ \([^()]+\))*",
        re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]*)"\)', cmake).group(1),
    )
    assert "find_package(Slicer REQUIRED)" in cmake


@pytest.mark.parametrize("module", MODULES)
def test_module_icon_is_a_128_pixel_png(module):
    with Image.open(PROJECT_ROOT / module / "Resources" / "Icons" / f"{module}.png") as icon:
        assert icon.format == "PNG"
        assert icon.size == (128, 128)


def _imported_top_level_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layering_engine_never_imports_slicer_qt_or_vtk_and_bridge_never_imports_qt():
    engine = PROJECT_ROOT / "DeepDiag" / "deepdiag"
    bridge = PROJECT_ROOT / "DeepDiag" / "DeepDiagLib"
    for path in engine.glob("*.py"):
        forbidden = _imported_top_level_packages(path) & {"slicer", "qt", "ctk", "vtk", "vtkmodules", "DeepDiagLib"}
        assert not forbidden, f"{path.name} (engine) imports {forbidden}"
    for path in bridge.glob("*.py"):
        forbidden = _imported_top_level_packages(path) & {"qt", "ctk", "DeepDiagGUI"}
        assert not forbidden, f"{path.name} (bridge) imports {forbidden}"


def test_all_python_runs_on_slicers_oldest_supported_python():
    """Slicer 5.6 ships Python 3.9: no syntax newer than that anywhere in the extension."""
    for path in PROJECT_ROOT.glob("DeepDiag*/**/*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_no_function_of_the_modules_the_bridge_or_the_widgets_is_longer_than_60_lines():
    files = [PROJECT_ROOT / m / f"{m}.py" for m in MODULES]
    files += sorted((PROJECT_ROOT / "DeepDiag" / "DeepDiagLib").glob("*.py")) + sorted(
        (PROJECT_ROOT / "DeepDiag" / "DeepDiagGUI").glob("*.py")
    )
    long = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long


def _logic_class(module: str) -> ast.ClassDef:
    tree = ast.parse(_module_source(module))
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == f"{module}Logic")


@pytest.mark.parametrize("module", MODULES)
def test_every_logic_method_a_panel_calls_is_one_its_logic_has(module):
    import DeepDiagLib

    logic = _logic_class(module)
    bases = [getattr(DeepDiagLib, base.id) for base in logic.bases if base.id != "ScriptedLoadableModuleLogic"]
    known = {item.name for item in logic.body if isinstance(item, ast.FunctionDef)} | {"getParameterNode"}
    known |= {name for base in bases for name in dir(base)}
    called = set(re.findall(r"self\.logic\.(\w+)", _module_source(module)))
    assert called <= known, f"{module}Logic lacks {sorted(called - known)}"


@pytest.mark.parametrize("module", MODULES)
def test_a_modules_logic_holds_no_method_that_only_forwards_to_a_bridge_function(module):
    tree = ast.parse(_module_source(module))
    from_bridge = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("DeepDiagLib")
        for alias in node.names
    }
    forwarding = []
    for method in (item for item in _logic_class(module).body if isinstance(item, ast.FunctionDef)):
        body = [s for s in method.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call):
            target = body[0].value.func
            if isinstance(target, ast.Name) and target.id in from_bridge:
                forwarding.append(method.name)
    assert not forwarding, f"{module}Logic methods that only call the bridge: {forwarding}"


def test_the_bridge_and_the_widgets_speak_slicers_camel_case():
    """Public functions, methods and their arguments of DeepDiagLib and DeepDiagGUI are camelCase
    (``segmentationTask(volumeNode, modelId)``), as Slicer's own Python API is."""
    folders = [PROJECT_ROOT / "DeepDiag" / "DeepDiagLib", PROJECT_ROOT / "DeepDiag" / "DeepDiagGUI"]
    snake = []
    for path in (p for folder in folders for p in sorted(folder.glob("*.py"))):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                arguments = [a.arg for a in node.args.args + node.args.kwonlyargs]
                snake += [f"{path.name}:{name}" for name in [node.name, *arguments] if "_" in name.strip("_")]
    assert not snake, snake
