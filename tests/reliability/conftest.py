"""Shared services of the reliability suite: one Orthanc for the scenarios that keep it up."""
from __future__ import annotations

from typing import Iterator

import pytest

from benchmarks.services import OrthancServer

@pytest.fixture(scope="session")
def reliability_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A real Orthanc that stays up for the whole suite (each scenario uses its own studies)."""
    orthanc = OrthancServer(tmp_path_factory.mktemp("reliability-orthanc")).start()
    yield orthanc
    orthanc.stop()
