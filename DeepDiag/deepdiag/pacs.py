"""``deepdiag pacs``: studies from a PACS over DICOMweb, results back to it.

Each CT series of the chosen studies is retrieved (WADO-RS), run through the task with DICOM
results, and its SEG and SR are stored back (STOW-RS) as new series of the same study. A series
that fails is one error row, and nothing is stored for it. Uses dicomweb-client, the DICOMweb
client Slicer's own DICOM module ships.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom

from .batch import ProcessOne, run_batch
from .errors import DeepDiagError
from .progress import ProgressReporter
from .tasks import task_processor

#: DICOM JSON tags of what the QIDO-RS answers carry
_STUDY_UID, _SERIES_UID, _MODALITY = "0020000D", "0020000E", "00080060"
#: where series are retrieved to, inside the output folder, while they are run
DOWNLOADS = ".pacs-download"


def run_pacs(
    url: str,
    task: str,
    studies: Sequence[str],
    query: Sequence[str],
    output_dir: str,
    reporter: ProgressReporter,
    device: str = "auto",
    min_score: float | None = None,
) -> bool:
    """Run ``task`` on each CT series of ``studies`` (StudyInstanceUIDs) or of the studies that match
    ``query`` (``KEY=VALUE`` QIDO-RS filters); store the results back. Returns whether all succeeded."""
    client = pacs_client(url)
    series = ct_series(client, url, studies, _filters(query))
    process, header = task_processor(task, output_dir, device=device, min_score=min_score, dicom_out=True)
    downloads = Path(output_dir) / DOWNLOADS
    try:
        return run_batch(
            series, series_processor(client, url, process, downloads), reporter, {**header, "pacs": url, "task": task}
        )
    finally:
        shutil.rmtree(downloads, ignore_errors=True)


def series_processor(client, url: str, process: ProcessOne, downloads: Path) -> ProcessOne:
    """What runs ``process`` (a task with DICOM results) on one PACS series ``STUDY_UID/SERIES_UID``:
    retrieve it into ``downloads``, run, store the SEG and SR back, delete the retrieved copy."""

    def process_series(item: str, progress) -> dict:
        study_uid, series_uid = item.split("/")
        folder = downloads / series_uid
        try:
            progress("retrieve", 0.0)
            _retrieve(client, url, study_uid, series_uid, folder)
            output = process(str(folder), lambda stage, fraction: progress(stage, 0.1 + 0.8 * fraction))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        progress("store", 0.95)
        stored = _store(client, url, [output[k] for k in ("dicom_seg", "dicom_sr") if k in output])
        return {**output, "input": item, "study": study_uid, "series": series_uid, "stored": stored}

    return process_series


def query_series(query_url: str) -> tuple[str, list[str]]:
    """The DICOMweb root and the CT series (``STUDY/SERIES``) of a query URL such as
    ``http://pacs/dicom-web?PatientID=123&StudyDate=2024`` (its parameters are QIDO-RS study filters)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(query_url)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    filters = dict(parse_qsl(parts.query))
    studies = [filters.pop("StudyInstanceUID")] if "StudyInstanceUID" in filters else []
    return url, ct_series(pacs_client(url), url, studies, filters)


def pacs_client(url: str):
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise DeepDiagError('a PACS needs dicomweb-client: pip install "deepdiag[cohort]"') from None
    client = DICOMwebClient(url=url)
    # dicomweb-client's default (5 attempts, waits from 1 s doubling) takes half a minute to say a
    # PACS is down; three attempts within about 2 s still ride out a dropped connection
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=500)
    return client


def _filters(query: Sequence[str]) -> dict[str, str]:
    filters = {}
    for item in query:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise DeepDiagError(f"--query takes KEY=VALUE (a DICOM keyword, e.g. PatientID=123), got {item!r}")
        filters[key] = value
    return filters


def ct_series(client, url: str, studies: Sequence[str], filters: dict[str, str]) -> list[str]:
    """``study/series`` of every CT series to run, in study order."""
    if not studies and not filters:
        raise DeepDiagError("name the studies: --study UID (repeatable) or --query KEY=VALUE")
    with _pacs_errors(url):
        if filters:
            found = client.search_for_studies(search_filters=filters)
            studies = [*studies, *(_value(s, _STUDY_UID) for s in found)]
        series = []
        for study in dict.fromkeys(studies):
            answers = client.search_for_series(study_instance_uid=study)
            series += [f"{study}/{_value(a, _SERIES_UID)}" for a in answers if _value(a, _MODALITY) == "CT"]
    if not series:
        raise DeepDiagError(f"no CT series in the {len(studies)} studies asked for", url)
    return series


def _retrieve(client, url: str, study_uid: str, series_uid: str, folder: Path) -> None:
    with _pacs_errors(url):
        # in the transfer syntax the PACS holds (JPEG 2000 stays JPEG 2000): the reader decodes it,
        # and a PACS without that codec answers a request for another syntax with an error
        instances = client.retrieve_series(
            study_instance_uid=study_uid, series_instance_uid=series_uid, media_types=(("application/dicom", "*"),)
        )
    folder.mkdir(parents=True, exist_ok=True)
    for index, instance in enumerate(instances):
        instance.save_as(folder / f"{index:05d}.dcm", enforce_file_format=True)


def _store(client, url: str, files: Sequence[str]) -> list[str]:
    """Store the result files (STOW-RS); returns their SOPInstanceUIDs."""
    datasets = [pydicom.dcmread(f) for f in files]
    with _pacs_errors(url):
        client.store_instances(datasets=datasets)
    return [str(d.SOPInstanceUID) for d in datasets]


def _value(answer: dict, tag: str) -> str:
    return str(answer.get(tag, {}).get("Value", [""])[0])


@contextlib.contextmanager
def _pacs_errors(url: str) -> Iterator[None]:
    """Network and HTTP failures as one DeepDiagError naming the PACS (never a requests traceback)."""
    import requests

    try:
        yield
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise DeepDiagError(f"the PACS answered HTTP {status} ({error})", url) from None
    except requests.RequestException as error:
        raise DeepDiagError(f"cannot reach the PACS ({type(error).__name__})", url) from None
