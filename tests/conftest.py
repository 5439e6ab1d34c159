from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from models.phantoms.head_ct import HeadCTPhantom, generate_head_ct, write_phantom
from benchmarks.services import OrthancServer
from node.ingest.server import IngestServer
from node.metrics import Metrics
from node.store.spool import Spool
from node.store import JobStore


def _dcmtk_first_on_path() -> None:
    """pynetdicom installs its own ``storescu``, ``echoscu``… into the venv's bin; the tests
    mean dcmtk's (the real modality), so dcmtk's folder goes first on PATH."""
    dcmdump = shutil.which("dcmdump")  # dcmtk only: pynetdicom has no dcmdump
    if dcmdump:
        os.environ["PATH"] = os.pathsep.join([str(Path(dcmdump).parent), os.environ.get("PATH", "")])


_dcmtk_first_on_path()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A real Orthanc as the PACS, shared by a test module's tests."""
    orthanc = OrthancServer(tmp_path_factory.mktemp("orthanc")).start()
    yield orthanc
    orthanc.stop()


@pytest.fixture
def ingest(tmp_path: Path):
    """A node's DICOM listener on a free loopback port: (server, store, spool, metrics)."""
    store = JobStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool")
    metrics = Metrics()
    server = IngestServer("AINODE", "127.0.0.1", 0, store, spool, metrics)
    server.start()
    yield server, store, spool, metrics
    server.stop()
    store.close()


@pytest.fixture(scope="session")
def small_head_ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[HeadCTPhantom, list[Path]]:
    """A 6-slice head CT phantom with a hematoma, written once for the session."""
    phantom = generate_head_ct(seed=7, slices=6, hematoma=True)
    out = tmp_path_factory.mktemp("small_head_ct")
    files = [p for p in write_phantom(phantom, out) if p.suffix == ".dcm"]
    return phantom, sorted(files)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """End-to-end tests need Orthanc and dcmtk; without them they fail loudly, never skip."""
    missing = [tool for tool in ("Orthanc", "storescu") if shutil.which(tool) is None and not Path("/usr/sbin/" + tool).exists()]
    if missing:
        for item in items:
            if "e2e" in item.keywords:
                item.add_marker(pytest.mark.usefixtures("_require_tools"))


@pytest.fixture
def _require_tools() -> None:
    raise RuntimeError("end-to-end tests need Orthanc and dcmtk installed (see .ci/run)")
