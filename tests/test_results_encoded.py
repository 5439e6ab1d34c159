"""Objects built and encoded aside: the worker saves the helper's bytes as they came when
their series UIDs are already the stable ones, and decodes and re-writes them when not."""
from __future__ import annotations

import queue
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.worker import saving as worker
from node.results.aside import EncodedObject
from node.packs.protocol import AlgorithmInfo, ResultContext
from node.worker import JobSpec, run_job, stable_series_uid

MODEL = "head-ct-hematoma"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture
def handover(monkeypatch):
    taken: queue.Queue = queue.Queue()
    monkeypatch.setattr(worker, "_HANDOVER", taken)
    yield taken


def _evidence_series(sr: Dataset) -> set[str]:
    return {series.SeriesInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence}


def test_a_report_encoded_aside_is_saved_in_the_stable_series_it_cites(tmp_path: Path, handover):
    phantom = generate_head_ct(seed=11, slices=12, hematoma=True)
    files = tuple(sorted(str(p) for p in write_phantom(phantom, tmp_path / "ct") if p.suffix == ".dcm"))
    source = str(phantom.datasets[0].SeriesInstanceUID)
    runs = []
    for job_id in (1, 2):
        outcome = run_job(JobSpec(job_id, MODEL, MODEL, None, "onnxruntime-cpu", None, files,
                                  str(tmp_path / f"out-{job_id}"), series_uid=source, hand_over=True))
        assert outcome.ok, outcome.reason
        runs.append([pydicom.dcmread(path) for _uid, _cls, path, _model in outcome.results])
    first, second = runs
    (sr,) = [ds for ds in first if ds.SOPClassUID == SR_CLASS]
    assert sr.SeriesInstanceUID == stable_series_uid(source, MODEL, str(sr.SeriesNumber))
    others = {ds.SeriesInstanceUID for ds in first if ds.SOPClassUID != SR_CLASS}
    assert len(others) == 2  # the SEG's series and the overlays' series
    assert others <= _evidence_series(sr), "the report cites the series its objects were saved in"
    assert [ds.SeriesInstanceUID for ds in first] == [ds.SeriesInstanceUID for ds in second]
    assert {ds.SOPInstanceUID for ds in first}.isdisjoint(ds.SOPInstanceUID for ds in second)
    assert handover.qsize() == len(first) + len(second)  # every object handed over for delivery as saved


def _object(series_uid: str, number: int, cites: str | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SR_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if cites:
        item = Dataset()
        item.SeriesInstanceUID = cites
        ds.ReferencedSeriesSequence = Sequence([item])
    return ds


class _FreshUidPack:
    """Yields a dataset in a fresh series, then an encoded object in another fresh series citing it."""

    def stream_results(self, series, findings, context):
        cited = _object(str(generate_uid()), 9000)
        yield cited
        yield EncodedObject.of(_object(str(generate_uid()), 9001, cites=str(cited.SeriesInstanceUID)))


def test_an_encoded_object_in_a_series_of_its_own_is_decoded_and_given_the_stable_series(tmp_path: Path, handover):
    source = str(generate_uid())
    spec = JobSpec(1, "fresh", "fresh", None, "onnxruntime-cpu", None, (), str(tmp_path), series_uid=source,
                   hand_over=True)
    context = ResultContext(algorithm=AlgorithmInfo("a", "1", str(generate_uid())))
    saved = worker.save_results(spec, _FreshUidPack(), [], None, context)
    first, second = (pydicom.dcmread(path) for _uid, _cls, path, _model in saved)
    assert first.SeriesInstanceUID == stable_series_uid(source, "fresh", "9000")
    assert second.SeriesInstanceUID == stable_series_uid(source, "fresh", "9001")
    assert second.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
