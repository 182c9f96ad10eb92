"""One table node layout for findings, whichever module made them.

Detection findings carry a centre, a diameter and a score; classified findings add the type,
its probabilities, the measurements and the Lung-RADS category. Both are shown with the same
columns, in the same order; a column no finding has a value for is left out.
"""

from __future__ import annotations

from collections.abc import Callable

import vtk

#: (title, value of a finding or None where it has none, whether the column holds text)
FINDINGS_COLUMNS: list[tuple[str, Callable[[dict], object], bool]] = [
    ("Finding", lambda f: f["id"], True),
    ("R (mm)", lambda f: f["center_ras"][0], False),
    ("A (mm)", lambda f: f["center_ras"][1], False),
    ("S (mm)", lambda f: f["center_ras"][2], False),
    ("Diameter (mm)", lambda f: f.get("diameter_mm"), False),
    ("Score", lambda f: f.get("score"), False),
    ("Type", lambda f: f.get("type"), True),
    ("P solid", lambda f: f.get("probabilities", {}).get("solid"), False),
    ("P part-solid", lambda f: f.get("probabilities", {}).get("part-solid"), False),
    ("P ground-glass", lambda f: f.get("probabilities", {}).get("ground-glass"), False),
    ("Long axis (mm)", lambda f: f.get("long_axis_mm"), False),
    ("Short axis (mm)", lambda f: f.get("short_axis_mm"), False),
    ("Mean diameter (mm)", lambda f: f.get("mean_diameter_mm"), False),
    ("Volume (mm3)", lambda f: f.get("volume_mm3"), False),
    ("Mean HU", lambda f: f.get("mean_hu"), False),
    ("Lung-RADS", lambda f: f.get("lung_rads"), True),
]


def findingsTableNode(scene, findings: list[dict], name: str):
    """A new table node with a row per finding, in the order given (row n = finding n)."""
    columns = [column for column in FINDINGS_COLUMNS if any(column[1](f) is not None for f in findings)]
    columns = columns or FINDINGS_COLUMNS[:4]
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    for title, _, isText in columns:
        array = vtk.vtkStringArray() if isText else vtk.vtkDoubleArray()
        array.SetName(title)
        table.AddColumn(array)
    data = table.GetTable()
    for finding in findings:
        row = data.InsertNextBlankRow()
        for index, (_, value, isText) in enumerate(columns):
            found = value(finding)
            data.SetValue(row, index, vtk.vtkVariant(("" if isText else float("nan")) if found is None else found))
    table.Modified()
    return table
