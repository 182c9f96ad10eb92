"""A Ray worker of ``deepdiag batch``: loads the task's models once, then runs one scan per call."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import DeepDiagError


class ScanWorker:
    """Runs the task on one scan at a time; a scan's failure is its answer, never the worker's end."""

    def __init__(self, options, threads: int):  # options: a ray_batch.BatchOptions
        import torch

        from ..tasks import task_processor

        torch.set_num_threads(threads)
        self.process, self.header = task_processor(
            options.task, options.output_dir, options.model_id, options.device, options.min_score, options.dicom_out
        )
        if options.pacs_url:  # the scans are PACS series: retrieve, run, store the results back
            from ..pacs import DOWNLOADS, pacs_client, series_processor

            downloads = Path(options.output_dir) / DOWNLOADS
            self.process = series_processor(pacs_client(options.pacs_url), options.pacs_url, self.process, downloads)

    def run(self, scan: str) -> dict:
        started = time.perf_counter()
        try:
            output = self.process(scan, lambda stage, fraction: None)
        except DeepDiagError as error:
            return {"ok": False, "error": str(error)}
        except Exception as error:  # one scan's bug must not end the batch
            return {"ok": False, "error": f"{scan}: internal error: {type(error).__name__}: {error}"}
        output["seconds"] = round(time.perf_counter() - started, 2)
        return {"ok": True, "output": output, "header": self.header}


def worker_class(ray):
    """``ScanWorker`` as a Ray actor class (made here so that importing this module needs no Ray)."""
    return ray.remote(ScanWorker)
