"""deepdiag batch on a local Ray instance: two workers, a corrupt scan as one error row, one results
table for the cohort, and a killed batch that, started again, does only what is left."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import PROJECT_ROOT, cli_command, cli_env, run_cli

LEDGER = ".deepdiag-batch"
#: small, coarse phantoms: what is tested is the scheduling, not the segmentation
COARSE_CASE = ["--size", "100", "100", "64", "--spacing", "3.5", "3.5", "5.5", "--nodules", "1", "1"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Five phantoms and one file that is not an image."""
    root = tmp_path_factory.mktemp("cohort")
    made = run_cli("phantom", "-o", str(root), "--cases", "5", "--seed", "5", *COARSE_CASE, "--progress", "none")
    assert made.returncode == 0, made.stderr
    (root / "images" / "corrupt.nrrd").write_bytes(b"NRRD0004\nthis header ends before its voxels\n")
    return root / "images"


def _batch(cohort: Path, output: Path, model: Path, workers: int) -> list[str]:
    return ["batch", str(cohort), "-o", str(output), "--task", "segment", "--model", str(model),
            "--workers", str(workers), "--progress", "json"]  # fmt: skip


def _result(stdout: str) -> dict:
    return next(json.loads(line) for line in stdout.splitlines() if '"event": "result"' in line)


def _processes_of(marker: str) -> list[int]:
    """Processes whose environment holds ``DEEPDIAG_TEST_RUN=marker``: the batch and everything it
    started (Ray's raylet, GCS and workers inherit the environment), whoever their parent is now."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"DEEPDIAG_TEST_RUN={marker}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def _gone(marker: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while _processes_of(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _processes_of(marker)


def test_a_killed_batch_started_again_does_only_the_scans_left_and_tables_the_whole_cohort(
    cohort, background_model, tmp_path
):
    ledger, marker = tmp_path / LEDGER, uuid.uuid4().hex
    first = subprocess.Popen(cli_command(*_batch(cohort, tmp_path, background_model, workers=2)), cwd=PROJECT_ROOT,
                             env=cli_env({"DEEPDIAG_TEST_RUN": marker}), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while len(list(ledger.glob("*.json"))) < 2 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=120)
    finished_before = {p.name: p.stat().st_mtime_ns for p in ledger.glob("*.json")}
    assert 2 <= len(finished_before) < 5, "killed after two scans, before the end"
    assert _gone(marker), "a killed batch stops its Ray instance"

    again_marker = uuid.uuid4().hex
    again = run_cli(*_batch(cohort, tmp_path, background_model, workers=2), env={"DEEPDIAG_TEST_RUN": again_marker})
    assert again.returncode == 1, again.stderr  # the corrupt scan failed
    summary = _result(again.stdout)
    assert (summary["scans"], summary["skipped"]) == (6, len(finished_before))
    assert summary["done"] == 5 - len(finished_before)  # only what was left
    assert {p.name: p.stat().st_mtime_ns for p in ledger.glob("*.json") if p.name in finished_before} == finished_before
    (failure,) = summary["failed"]
    assert failure["input"].endswith("corrupt.nrrd") and "corrupt.nrrd" in failure["error"]
    table = pq.read_table(summary["table_parquet"]).to_pylist()  # the whole cohort, not only this run
    assert sorted(r["status"] for r in table) == ["failed"] + ["ok"] * 5
    assert {r["scan_id"] for r in table if r["status"] == "ok"} == {f"phantom_s5_00{n}" for n in range(5)}
    assert all(r["models"] == "tiny-background-seg@1" for r in table if r["status"] == "ok")
    assert len(Path(summary["table_csv"]).read_text().splitlines()) == len(table) + 1
    assert sorted(p.name for p in tmp_path.glob("*.seg.nrrd")) == [f"phantom_s5_00{n}.seg.nrrd" for n in range(5)]
    assert _gone(again_marker), "the local Ray instance is stopped at the end"


def test_a_scan_over_the_time_limit_is_stopped_and_is_one_error_row(cohort, background_model, tmp_path):
    single = tmp_path / "one"
    single.mkdir()
    (single / "slow.nrrd").write_bytes((cohort / "phantom_s5_000.nrrd").read_bytes())
    marker = uuid.uuid4().hex
    arguments = [*_batch(single, tmp_path / "out", background_model, workers=1), "--timeout", "1"]
    result = run_cli(*arguments, env={"DEEPDIAG_TEST_RUN": marker})  # a worker alone takes longer to start
    assert result.returncode == 1
    summary = _result(result.stdout)
    (failure,) = summary["failed"]
    assert failure["error"] == f"{single / 'slow.nrrd'}: took longer than 1 s; stopped"
    assert not list((tmp_path / "out" / LEDGER).glob("*.json"))  # not done: a new batch runs it again
    assert [r["status"] for r in pq.read_table(summary["table_parquet"]).to_pylist()] == ["failed"]
    assert _gone(marker), "the stopped worker and Ray are gone"


def test_a_scan_counts_as_done_only_while_its_input_and_outputs_are_unchanged(tmp_path):
    from deepdiag.cohort.ledger import Ledger, input_digest

    scan, output = tmp_path / "scan.nrrd", tmp_path / "out" / "scan.seg.nrrd"
    scan.write_bytes(b"first scan")
    output.parent.mkdir()
    output.write_bytes(b"its segmentation")
    ledger = Ledger(tmp_path / "out")
    ledger.record(str(scan), input_digest(scan), {"input": str(scan), "segmentation": str(output)}, {"model": "m@1"})
    assert ledger.finished(str(scan), input_digest(scan)) is not None
    scan.write_bytes(b"another scan under the same name")
    assert ledger.finished(str(scan), input_digest(scan)) is None
    scan.write_bytes(b"first scan")
    output.unlink()
    assert ledger.finished(str(scan), input_digest(scan)) is None


def test_a_manifest_is_a_folder_a_glob_or_a_csv_of_paths(tmp_path):
    from deepdiag.cohort.manifest import read_manifest
    from deepdiag.errors import DeepDiagError

    for name in ("b.nrrd", "a.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "1.dcm").write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,site\nb.nrrd,A\nseries,B\nb.nrrd,A\n")
    assert read_manifest(str(tmp_path)) == [str(tmp_path / n) for n in ("a.nii.gz", "b.nrrd", "series")]
    assert read_manifest(str(tmp_path / "*.nrrd")) == [str(tmp_path / "b.nrrd")]
    assert read_manifest(str(tmp_path / "list.csv")) == [str(tmp_path / "b.nrrd"), str(tmp_path / "series")]
    with pytest.raises(DeepDiagError, match="names no scan"):
        read_manifest(str(tmp_path / "*.mha"))
