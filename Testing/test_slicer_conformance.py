"""The modules keep Slicer's own rules, checked against Slicer's source since the application
cannot run here.

- Every widget bound in a ``.ui`` (``SlicerParameterName``) pairs with its parameter's annotation
  the way one of Slicer's parameterNodeWrapper connectors accepts, without silently widening a
  spin box's range. The table below is written from
  Base/Python/slicer/parameterNodeWrapper/guiConnectors.py (Slicer 5.6 to main): each entry's
  ``canRepresent`` and what its ``create``/``__init__`` raise on or reset.
- Every method or property the module code uses on a widget of its ``.ui`` is one its class has,
  from the Qt, CTK and Slicer headers cited per class.
- Every VTK/MRML method the modules and the bridge call exists on a real slicer-core object.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree

import pytest
from conftest import PROJECT_ROOT

MODULES = ["DeepDiag", "DeepDiagSegment", "DeepDiagDetect"]
MRML_NODE = "MRML node"

#: widget class -> (accepted value types, annotations the connector needs). From guiConnectors.py:
#: QSlider and ctkSliderWidget raise without bounds; QSpinBox and QDoubleSpinBox accept an unbounded
#: type but then set their range to -2**31..2**31-1 or -inf..inf, overriding the .ui's range, so a
#: bound is required here too; QComboBoxToStringableConnector raises "requires the Choice annotation".
ACCEPTED_PAIRS = {
    "QCheckBox": ({"bool"}, set()),
    "QPushButton": ({"bool"}, set()),
    "QSlider": ({"int"}, {"bounds"}),
    "QSpinBox": ({"int"}, {"bounds"}),
    "QDoubleSpinBox": ({"float"}, {"bounds"}),
    "ctkSliderWidget": ({"float"}, {"bounds"}),
    "QComboBox": ({"int", "float", "str", "bool"}, {"Choice"}),
    "QLineEdit": ({"str"}, set()),
    "QTextEdit": ({"str"}, set()),
    "ctkPathLineEdit": ({"Path"}, set()),
    "ctkDirectoryButton": ({"Path"}, set()),
    "qMRMLNodeComboBox": ({MRML_NODE}, set()),
    "qMRMLSubjectHierarchyTreeView": ({MRML_NODE}, set()),
}

_WIDGET = {
    "connect",
    "enabled",
    "visible",
    "toolTip",
    "blockSignals",
    "setEnabled",
    "setVisible",
}  # qwidget.h, qobject.h
_BUTTON = _WIDGET | {"text", "checked", "checkable", "clicked()", "clicked(bool)", "toggled(bool)"}  # qabstractbutton.h
#: widget class -> the members the module code may use: properties (PythonQt attributes), public
#: methods and slots, and signals as written in ``connect("signal(args)", ...)``.
WIDGET_MEMBERS = {
    "QPushButton": _BUTTON,
    "QToolButton": _BUTTON,
    "QCheckBox": _BUTTON | {"stateChanged(int)"},
    "QLabel": _WIDGET | {"text", "setText"},  # qlabel.h
    "QProgressBar": _WIDGET | {"value", "minimum", "maximum", "setValue"},  # qprogressbar.h
    "QPlainTextEdit": _WIDGET | {"plainText", "setPlainText", "clear"},  # qplaintextedit.h
    "QListWidget": _WIDGET | {"addItem", "currentRow", "takeItem", "count", "clear", "item"},  # qlistwidget.h
    "QComboBox": _WIDGET
    | {  # qcombobox.h
        "addItem",
        "addItems",
        "clear",
        "count",
        "currentText",
        "currentIndex",
        "itemText",
        "currentTextChanged(QString)",
        "currentIndexChanged(int)",
    },
    "QTableWidget": _WIDGET
    | {
        "setColumnCount",
        "setRowCount",
        "setHorizontalHeaderLabels",
        "setItem",
        "rowCount",
        "columnCount",
        "clearContents",
    },  # qtablewidget.h
    "QSpinBox": _WIDGET | {"value", "minimum", "maximum", "valueChanged(int)"},
    "QDoubleSpinBox": _WIDGET | {"value", "minimum", "maximum", "decimals", "valueChanged(double)"},
    "QLineEdit": _WIDGET | {"text", "textChanged(QString)"},
    "ctkPathLineEdit": _WIDGET | {"currentPath", "setCurrentPath", "currentPathChanged(QString)"},  # ctkPathLineEdit.h
    "ctkSliderWidget": _WIDGET | {"value", "minimum", "maximum", "valueChanged(double)"},  # ctkSliderWidget.h
    "qMRMLNodeComboBox": _WIDGET
    | {
        "currentNode",
        "setCurrentNode",
        "setMRMLScene",
        "nodeTypes",
        "currentNodeChanged(vtkMRMLNode*)",
    },  # Libs/MRML/Widgets/qMRMLNodeComboBox.h
    # Libs/MRML/Widgets/qMRMLTableView.h (a QTableView: selectionModel from qabstractitemview.h);
    # there is no selectedMRMLTableRowIndices, only the column variant.
    "qMRMLTableView": _WIDGET
    | {
        "setMRMLTableNode",
        "mrmlTableNode",
        "setMRMLScene",
        "tableModel",
        "sortFilterProxyModel",
        "selectedMRMLTableColumnIndices",
        "selectionModel",
        "transposed",
        "selectionChanged()",
    },
    "qMRMLPlotView": _WIDGET | {"setMRMLScene", "setMRMLPlotViewNode"},
}

#: names called like VTK/MRML methods that are not: Python and Qt constructors, and PyTorch Utils
NOT_MRML = {"Thread", "Queue", "Popen", "STARTUPINFO", "QSettings", "QTimer", "QTableWidgetItem", "PyTorchUtilsLogic"}


def _ui_root(module: str) -> ElementTree.Element:
    return ElementTree.parse(PROJECT_ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()


def _bound_widgets(module: str) -> dict[str, str]:
    """Parameter name -> class of the widget bound to it in the module's .ui."""
    bound = {}
    for widget in _ui_root(module).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    return bound


def _widget_classes(module: str) -> dict[str, str]:
    return {w.get("name"): w.get("class") for w in _ui_root(module).iter("widget")}


def _parameter_annotations(module: str) -> dict[str, ast.expr]:
    tree = ast.parse((PROJECT_ROOT / module / f"{module}.py").read_text())
    parameters = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == f"{module}ParameterNode")
    return {item.target.id: item.annotation for item in parameters.body if isinstance(item, ast.AnnAssign)}


def _describe(annotation: ast.expr) -> tuple[str, set[str]]:
    """(value type, the connector-relevant annotations) of ``T`` or ``Annotated[T, ...]``."""
    extras = set()
    if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Annotated":
        base, *metadata = annotation.slice.elts
        for item in metadata:
            name = ast.unparse(item.func if isinstance(item, ast.Call) else item)
            extras.add("bounds" if name == "WithinRange" else name)
        if {"Minimum", "Maximum"} <= extras:
            extras.add("bounds")
        annotation = base
    name = ast.unparse(annotation).split(".")[-1]
    return (MRML_NODE if name.startswith("vtkMRML") else name), extras


def _bound_pairs():
    return [(m, p, c) for m in MODULES for p, c in _bound_widgets(m).items()]


@pytest.mark.parametrize("module,parameter,widget_class", _bound_pairs())
def test_every_bound_widget_pairs_with_its_annotation_as_a_slicer_connector_accepts(module, parameter, widget_class):
    annotation = _parameter_annotations(module)[parameter]
    value_type, extras = _describe(annotation)
    assert widget_class in ACCEPTED_PAIRS, (
        f"{module}.ui binds {parameter} to a {widget_class}: no Slicer connector takes it"
    )
    types, needed = ACCEPTED_PAIRS[widget_class]
    assert value_type in types, f"{module}: a {widget_class} cannot represent {parameter}: {ast.unparse(annotation)}"
    missing = needed - extras
    assert not missing, f"{module}: {parameter} ({ast.unparse(annotation)}) on a {widget_class} needs {sorted(missing)}"


def _widget_uses(path, names: dict[str, str]) -> set[tuple[str, str]]:
    """(widget name, member) for ``self.ui.<widget>.<member>`` and ``connect("<signal>", ...)``."""
    source = path.read_text()
    uses = set(re.findall(r"self\.ui\.(\w+)\.(\w+)", source))
    uses |= set(re.findall(r"self\.ui\.(\w+)\.connect\(\"([^\"]+)\"", source))
    for alias, widget in re.findall(r"\b(\w+) = self\.ui\.(\w+)$", source, re.MULTILINE):  # view = self.ui.tableView
        uses |= {(widget, member) for member in re.findall(rf"\b{alias}\.(\w+)", source)}
    return {(widget, member) for widget, member in uses if widget in names}


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_member_the_module_uses_exists_in_its_class(module):
    classes = _widget_classes(module)
    unknown = []
    for widget, member in sorted(_widget_uses(PROJECT_ROOT / module / f"{module}.py", classes)):
        widget_class = classes[widget]
        assert widget_class in WIDGET_MEMBERS, f"{module}.ui: no member list for {widget_class} ({widget})"
        if member not in WIDGET_MEMBERS[widget_class]:
            unknown.append(f"{widget} ({widget_class}).{member}")
    assert not unknown, f"{module}.py uses members its widgets' classes do not have: {unknown}"


def test_shared_widget_code_uses_only_members_the_modules_widgets_have():
    classes = {**_widget_classes("DeepDiagSegment"), **_widget_classes("DeepDiagDetect")}
    gui = PROJECT_ROOT / "DeepDiag" / "DeepDiagGUI"
    uses = set().union(*(_widget_uses(path, classes) for path in gui.glob("*.py")))
    unknown = [f"{w}.{m}" for w, m in sorted(uses) if m not in WIDGET_MEMBERS[classes[w]]]
    assert uses and not unknown, f"DeepDiagGUI uses unknown widget members: {unknown}"


def _mrml_objects():
    slicer = pytest.importorskip("slicer", reason="slicer-core is part of the test requirements")
    vtk = pytest.importorskip("vtk")
    names = [n for n in dir(slicer) if n.startswith(("vtkMRML", "vtkSlicer", "vtkSegment", "vtkOrientedImageData"))]
    objects = []
    for name in names:
        try:
            objects.append(getattr(slicer, name)())
        except TypeError:  # abstract classes cannot be made; their methods are on their subclasses
            continue
    return objects + [vtk.vtkTable(), vtk.vtkStringArray(), vtk.vtkDoubleArray(), vtk.vtkImageData()]


def test_every_vtk_or_mrml_method_the_slicer_side_calls_exists_in_slicer_core():
    files = [PROJECT_ROOT / m / f"{m}.py" for m in MODULES]
    files += sorted((PROJECT_ROOT / "DeepDiag" / "DeepDiagLib").glob("*.py"))
    files += sorted((PROJECT_ROOT / "DeepDiag" / "DeepDiagGUI").glob("*.py"))
    called = set()
    for path in files:
        called |= set(re.findall(r"\.([A-Z][A-Za-z0-9]+)\(", path.read_text()))
    called -= NOT_MRML
    objects = _mrml_objects()
    missing = sorted(name for name in called if not any(hasattr(obj, name) for obj in objects))
    assert called and not missing, f"no slicer-core class has {missing}"
