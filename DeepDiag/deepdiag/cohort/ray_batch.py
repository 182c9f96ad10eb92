"""``deepdiag batch``: a task over every scan of a manifest on Ray workers, each loading its
models once, one scan at a time per worker.

Without ``--address`` a local Ray instance is started, sized to the machine, and stopped at the
end. A scan whose outputs exist and whose input is unchanged (see ``ledger``) is skipped, so a
killed batch started again does only what is left. A failing scan is one error row; a scan over
the time limit has its worker replaced. The cohort's results table is written at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..batch import refuse_duplicate_stems
from ..errors import DeepDiagError
from ..progress import ProgressReporter
from ..tasks import check_task
from .ledger import Ledger, input_digest
from .manifest import is_pacs_query, read_manifest
from .table import cohort_rows, write_table


@dataclass(frozen=True)
class BatchOptions:
    """What ``deepdiag batch`` runs and how."""

    task: str
    output_dir: str
    model_id: str | None = None
    device: str = "auto"
    min_score: float | None = None
    dicom_out: bool = False
    workers: int | None = None  # None: one per GPU, else one per two CPU cores
    timeout_s: float = 1800.0
    address: str | None = None  # ray://HOST:PORT of a running cluster
    pacs_url: str | None = None  # the scans are series of this DICOMweb PACS


def run_cohort(manifest: str, options: BatchOptions, reporter: ProgressReporter) -> bool:
    """Run the batch; report one result event (counts, table paths); return whether no scan failed."""
    check_task(options.task, options.model_id, options.min_score)
    reporter.progress("check", 0.0, f"reading {manifest}")
    scans, digests, options = _scans_of(manifest, options)
    ledger = Ledger(options.output_dir)
    done = {s: r for s in scans if (r := ledger.finished(s, digests[s]) if digests[s] else None)}
    pending = [s for s in scans if s not in done]
    failures = [{"input": s, "error": f"{s}: no such file or folder"} for s in pending if not digests[s]]
    pending = [s for s in pending if digests[s]]
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # a killed batch shuts its Ray instance down
    ray = _start_ray(options)
    try:
        finished, failed = _run_on_workers(ray, pending, digests, ledger, options, reporter, len(done))
    finally:
        ray.shutdown()
        if options.pacs_url:
            from ..pacs import DOWNLOADS

            shutil.rmtree(Path(options.output_dir) / DOWNLOADS, ignore_errors=True)
    records = [done.get(s) or finished.get(s) for s in scans if s in done or s in finished]
    failures += failed
    table = write_table(options.output_dir, cohort_rows(records, failures, options.task))
    reporter.result(
        {
            "task": options.task,
            "scans": len(scans),
            "skipped": len(done),
            "done": len(finished),
            "failed": failures,
            "seconds": round(time.perf_counter() - started, 1),
            **table,
        }
    )
    return not failures


def _scans_of(manifest: str, options: BatchOptions) -> tuple[list[str], dict[str, str | None], BatchOptions]:
    """The scans, what identifies each one's content, and the options for them.

    A PACS query's scans are its CT series (``STUDY/SERIES``), identified by their UIDs (a DICOM
    series does not change under its UID); their SEG and SR go back to the PACS.
    """
    if is_pacs_query(manifest):
        from ..pacs import query_series

        url, series = query_series(manifest)
        return series, {s: s for s in series}, replace(options, pacs_url=url, dicom_out=True)
    scans = read_manifest(manifest)
    refuse_duplicate_stems(scans, ".json")
    return scans, {scan: _digest(scan) for scan in scans}, options


def _digest(scan: str) -> str | None:
    try:
        return input_digest(scan)
    except OSError:
        return None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _start_ray(options: BatchOptions):
    try:
        import ray
    except ImportError:
        raise DeepDiagError('deepdiag batch needs Ray: pip install "deepdiag[cohort]"') from None
    if options.address:
        ray.init(address=options.address, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    return ray


def _run_on_workers(ray, pending: Sequence[str], digests, ledger, options, reporter, skipped: int):
    """Hand the scans out to the workers, one at a time each; returns (records, failures)."""
    from .worker import worker_class

    gpus = int(ray.cluster_resources().get("GPU", 0))
    workers = options.workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)) // 2)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
    # one GPU per worker where there are enough; more workers than GPUs share them
    make = worker_class(ray).options(num_cpus=cpus, num_gpus=min(1.0, gpus / workers) if gpus else 0)

    def new_worker():
        return make.remote(options, cpus)

    queue, running, records, failures = list(pending), {}, {}, []
    idle = [new_worker() for _ in range(min(workers, len(queue)))]
    clock = _Eta(len(pending) + skipped, skipped)
    while queue or running:
        while idle and queue:
            worker, scan = idle.pop(), queue.pop(0)
            running[worker.run.remote(scan)] = (worker, scan, time.monotonic())
        ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for reference in ready:
            worker, scan, _ = running.pop(reference)
            try:
                answer = ray.get(reference)
            except ray.exceptions.RayError as error:  # the worker itself died (out of memory, killed)
                answer, worker = {"ok": False, "error": f"{scan}: the worker running it died ({error})"}, new_worker()
            if answer["ok"]:
                records[scan] = ledger.record(scan, digests[scan], answer["output"], answer["header"])
            else:
                failures.append({"input": scan, "error": answer["error"]})
                reporter.error(answer["error"], scan)
            idle.append(worker)
            reporter.progress("batch", *clock.tick(len(failures)))
        for reference, (worker, scan, since) in list(running.items()):
            if time.monotonic() - since > options.timeout_s:
                ray.kill(worker)
                running.pop(reference)
                failures.append({"input": scan, "error": f"{scan}: took longer than {options.timeout_s:g} s; stopped"})
                reporter.error(failures[-1]["error"], scan)
                idle.append(new_worker())
                reporter.progress("batch", *clock.tick(len(failures)))
    return records, failures


class _Eta:
    """The bar and the time left, from the scans this run has finished."""

    def __init__(self, total: int, skipped: int):
        self.total, self.finished, self.skipped, self.started = total, skipped, skipped, time.monotonic()

    def tick(self, failed: int) -> tuple[float, str]:
        """One more scan finished: the share done, and the bar with counts and time left."""
        self.finished += 1
        fraction = self.finished / max(self.total, 1)
        left = (time.monotonic() - self.started) / (self.finished - self.skipped) * (self.total - self.finished)
        filled = round(20 * fraction)
        bar = f"|{'█' * filled}{'·' * (20 - filled)}|"
        eta = time.strftime("%H:%M:%S", time.gmtime(left))
        return fraction, f"{bar} {self.finished}/{self.total} scans, {failed} failed, ETA {eta}"
