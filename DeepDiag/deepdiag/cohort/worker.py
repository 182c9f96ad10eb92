"""A Ray worker of ``deepdiag batch``: loads the task's models once, then runs one scan per call."""

from __future__ import annotations

import time

from ..errors import DeepDiagError


class ScanWorker:
    """Runs the task on one scan at a time; a scan's failure is its answer, never the worker's end."""

    def __init__(self, task, output_dir, model_id, device, min_score, dicom_out, threads: int):
        import torch

        from ..tasks import task_processor

        torch.set_num_threads(threads)
        self.process, self.header = task_processor(task, output_dir, model_id, device, min_score, dicom_out)

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
