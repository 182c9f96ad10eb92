"""A real Orthanc PACS with its DICOMweb plugin, started on a free loopback port for a test and
stopped after it (Debian packages orthanc and orthanc-dicomweb, installed by make test)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@contextlib.contextmanager
def running_orthanc(folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start Orthanc storing into ``folder``; yield its REST root (``http://127.0.0.1:PORT``) and
    its process, which has ended when the block is left."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = {
        "Name": "DeepDiagTest",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    server = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(root, server, folder / "orthanc.log")
        yield root, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def upload(root: str, files: list[Path]) -> None:
    """Store DICOM files through Orthanc's REST API (POST /instances)."""
    for file in files:
        request = urllib.request.Request(f"{root}/instances", data=file.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200, f"Orthanc refused {file}"


def get(root: str, path: str):
    with urllib.request.urlopen(f"{root}{path}", timeout=60) as answer:
        return json.loads(answer.read())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(root: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"Orthanc ended with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            get(root, "/system")
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer within {timeout} s: {log.read_text()[-2000:]}")
