"""The results table of a cohort: ``findings.parquet`` and ``findings.csv``, a row per finding
(scan id, model versions, every measurement), a row per scan without findings, a row per failed scan."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from ..files import atomic_output
from ..image_io import input_stem

#: columns every row has, first
_LEADING = ["scan_id", "input", "status", "error", "task", "models", "finding_id"]


def cohort_rows(records: Sequence[dict], failures: Sequence[dict], task: str) -> list[dict]:
    """Rows of the table from the finished scans' records and this run's failures."""
    rows = []
    for record in records:
        base = {
            "scan_id": input_stem(record["input"]),
            "input": record["input"],
            "status": "ok",
            "error": None,
            "task": task,
            "models": ",".join(_models(record["header"])),
        }
        findings = _findings(record["output"])
        if findings is None:  # segment: one row per scan
            rows.append({**base, "finding_id": None, "nodules": record["output"].get("nodules")})
            continue
        rows += [{**base, **_flat(f)} for f in findings] or [{**base, "finding_id": None}]
    for failure in failures:
        scan = failure["input"]
        rows.append(
            {
                "scan_id": input_stem(scan),
                "input": scan,
                "status": "failed",
                "error": failure["error"],
                "task": task,
                "models": None,
                "finding_id": None,
            }
        )
    return rows


def write_table(output_dir: str | Path, rows: Sequence[dict]) -> dict[str, str]:
    """Write the rows as Parquet (pyarrow) and CSV, atomically; returns both paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _LEADING + sorted({k for row in rows for k in row} - set(_LEADING))
    full = [{c: row.get(c) for c in columns} for row in rows]
    paths = {"table_parquet": Path(output_dir) / "findings.parquet", "table_csv": Path(output_dir) / "findings.csv"}
    with atomic_output(paths["table_parquet"]) as temporary:
        pq.write_table(pa.Table.from_pylist(full), temporary)
    with atomic_output(paths["table_csv"]) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(full)
    return {k: str(v) for k, v in paths.items()}


def _models(header: dict) -> list[str]:
    return header.get("models") or ([header["model"]] if "model" in header else [])


def _findings(output: dict) -> list[dict] | None:
    path = output.get("findings")
    if not isinstance(path, str):
        return None
    return json.loads(Path(path).read_text())["findings"]


def _flat(finding: dict) -> dict:
    """A finding as columns: LPS centre as three, type probabilities as p_<type>."""
    row = {"finding_id": finding["id"]}
    for key, value in finding.items():
        if key in ("id", "center_ras"):
            continue
        if key == "center_lps":
            row |= {f"lps_{axis}": c for axis, c in zip("xyz", value)}
        elif key == "probabilities":
            row |= {f"p_{name}": p for name, p in value.items()}
        elif not isinstance(value, (dict, list)):
            row[key] = value
    return row
