"""Patient names in five character sets survive storescu → node → results → a real Orthanc.

Each source is a real head CT slice (693_UNCR) renamed in one character set; every result
object the node delivers carries the source's Specific Character Set and decodes to the
same name (Japanese in ISO 2022 IR 87 and IR 13 with escape sequences, UTF-8, GB18030,
Latin-1).
"""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from support import HEAD_CT_ROUTE, OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

NAMES: dict[str, tuple[list[str] | str, str]] = {
    "jis-x-0208": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    "jis-x-0201": (["ISO 2022 IR 13", "ISO 2022 IR 87"], "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
    "utf-8": ("ISO_IR 192", "Wang^XiaoDong=王^小東"),
    "gb18030": ("GB18030", "Wang^XiaoDong=王^小东"),
    "latin-1": ("ISO_IR 100", "Buc^Jérôme"),
}


def _source(tmp_path: Path, key: str) -> pydicom.Dataset:
    charset, name = NAMES[key]
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.FrameOfReferenceUID = generate_uid()
    ds.BodyPartExamined = "HEAD"
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    ds.PatientID = f"CS-{key}"
    path = tmp_path / f"{key}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)


def test_names_in_five_character_sets_come_back_unchanged(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = start_node(tmp_path / "node", orthanc, HEAD_CT_ROUTE)
    try:
        sources = {key: _source(tmp_path, key) for key in NAMES}
        storescu([tmp_path / f"{key}.dcm" for key in NAMES], node.dicom_port)
        series = {str(ds.SeriesInstanceUID) for ds in sources.values()}

        def delivered():
            jobs = [j for j in node.jobs() if j["series_uid"] in series and j["state"] in ("delivered", "failed")]
            return jobs if len(jobs) == len(series) else None

        jobs = wait_for(delivered, 240, what="one delivered job per character set")
        assert all(j["state"] == "delivered" for j in jobs), jobs
        for key, source in sources.items():
            results = orthanc.results_by_class(source.StudyInstanceUID, source.SeriesInstanceUID)
            objects = [ds for group in results.values() for ds in group]
            assert len(objects) >= 2, (key, sorted(results))
            for ds in objects:
                assert ds.SpecificCharacterSet == source.SpecificCharacterSet, (key, ds.Modality)
                assert str(ds.PatientName) == str(source.PatientName) == NAMES[key][1], (key, ds.Modality)
                assert ds.PatientName.components == source.PatientName.components
    finally:
        node.stop()
        orthanc.stop()
