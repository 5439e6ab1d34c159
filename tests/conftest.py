from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.phantoms.head_ct import HeadCTPhantom, generate_head_ct, write_phantom


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
