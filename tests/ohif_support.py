"""OHIF v3 served by a real Orthanc, beside its DICOMweb API, for the browser tests.

The built viewer comes from npm (``make ohif`` puts ``@ohif/app``'s ``package/dist`` in
:data:`OHIF_DIST`). It expects to sit at ``/``; Orthanc's ServeFolders plugin serves it under
``/ohif/`` on the same origin as ``/dicom-web/`` (no CORS). :func:`build_site` makes that
possible without copying 200 MB: a folder of symbolic links to the dist, except the few files
that name ``/`` and are rewritten (``index.html``, the CSS, the webpack public path of each
bundle, ``init-service-worker.js``), an ``app-config.js`` whose data source is Orthanc's
DICOMweb, and one extension-less copy of ``index.html`` per page route (``viewer``,
``segmentation`` …), which ServeFolders sends as ``text/html`` with its ``Extensions``
option ``{"": "text/html"}``: ``/ohif/viewer?StudyInstanceUIDs=…`` opens the viewer.

Run as a script to build a site for an Orthanc of your own (docs/operating.md, "Viewing results")::

    .venv/bin/python tests/ohif_support.py var/ohif-site
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALL_ROUTES", "OHIF_DIST", "OHIF_VERSION", "PAGE_ROUTES", "Study", "build_site", "missing_ohif_message",
           "orthanc_config", "process", "require_ohif", "write_studies"]

OHIF_VERSION = "3.13.2"
REPOSITORY = Path(__file__).resolve().parent.parent
OHIF_DIST = Path(os.environ.get("AINODE_OHIF_DIST", REPOSITORY / "var" / f"ohif-{OHIF_VERSION}" / "dist"))
"""The built viewer (``make ohif``); ``AINODE_OHIF_DIST`` points elsewhere."""
SERVE_FOLDERS_PLUGIN = Path("/usr/share/orthanc/plugins/libServeFolders.so")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
PAGE_ROUTES = ("viewer", "segmentation", "basic", "tmtv", "microscopy")
"""OHIF's mode routes that get a copy of ``index.html`` (ServeFolders has no fallback)."""
_PUBLIC_PATH = '__webpack_require__.p = "/";'


def missing_ohif_message() -> str | None:
    """Why the viewer tests cannot run (``None`` when they can)."""
    if not (OHIF_DIST / "index.html").is_file():
        return (f"OHIF {OHIF_VERSION} is not at {OHIF_DIST}: run `make ohif` "
                f"(npm pack @ohif/app@{OHIF_VERSION}, once)")
    missing = [str(p) for p in (SERVE_FOLDERS_PLUGIN, DICOMWEB_PLUGIN) if not p.exists()]
    if missing:
        return f"Orthanc plugins missing: {', '.join(missing)} (apt-get install orthanc orthanc-dicomweb)"
    return None


def require_ohif() -> Path:
    """:data:`OHIF_DIST`, or fail (never skip) saying to run ``make ohif``."""
    message = missing_ohif_message()
    if message:
        import pytest

        pytest.fail(message, pytrace=False)
    return OHIF_DIST


def app_config(base: str = "/ohif", dicomweb: str = "/dicom-web") -> str:
    """OHIF's ``app-config.js``: one DICOMweb data source, Orthanc's, on the same origin."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "orthanc",
        "configuration": {
            "friendlyName": "Orthanc (the PACS)",
            "name": "orthanc",
            "wadoUriRoot": "/wado",
            "qidoRoot": dicomweb,
            "wadoRoot": dicomweb,
            "qidoSupportsIncludeField": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": base,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 10},
        "showErrorDetails": "always",
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "orthanc",
        "dataSources": [source],
    }
    return "/** ainode: OHIF beside Orthanc's DICOMweb (tests/ohif_support.py) */\nwindow.config = " + json.dumps(config, indent=2) + ";\n"


def build_site(dest: Path, base: str = "/ohif", dist: Path | None = None) -> Path:
    """A copy of the OHIF dist rebased from ``/`` to ``base`` at ``dest``: links to the dist
    for every file that does not name ``/``, rewritten copies of those that do."""
    dist = Path(dist or OHIF_DIST)
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(missing_ohif_message() or f"no index.html in {dist}")
    prefix = base.rstrip("/") + "/"
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in dist.iterdir():
        target = dest / entry.name
        if entry.name == "index.html":
            continue
        if entry.name == "app-config.js":
            target.write_text(app_config(base.rstrip("/")), encoding="utf-8")
        elif entry.suffix == ".css" and "url(/" in (text := entry.read_text(encoding="utf-8")):
            target.write_text(text.replace("url(/", f"url({prefix}"), encoding="utf-8")
        elif entry.name == "init-service-worker.js":
            target.write_text("// ainode: no service worker under ServeFolders\n", encoding="utf-8")
        elif entry.suffix == ".js" and _PUBLIC_PATH.encode() in entry.read_bytes():
            text = entry.read_text(encoding="utf-8")
            target.write_text(text.replace(_PUBLIC_PATH, f'__webpack_require__.p = "{prefix}";'), encoding="utf-8")
        else:
            target.symlink_to(entry.resolve())
    index = (dist / "index.html").read_text(encoding="utf-8")
    index = re.sub(r'(href|src)="/(?!/)', rf'\1="{prefix}', index)
    index = index.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{prefix}"')
    for name in ("index.html", *PAGE_ROUTES):
        (dest / name).write_text(index, encoding="utf-8")
    return dest


def orthanc_config(site: Path, base: str = "/ohif") -> dict[str, Any]:
    """Orthanc settings (``extra_config`` of :class:`benchmarks.services.OrthancServer`) that
    serve ``site`` at ``base`` beside DICOMweb at ``/dicom-web/``."""
    return {
        "Plugins": [str(DICOMWEB_PLUGIN), str(SERVE_FOLDERS_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "ServeFolders": {
            "AllowCache": False,
            "GenerateETag": True,
            "Extensions": {"": "text/html"},  # the page routes: copies of index.html with no extension
            "Folders": {base.rstrip("/"): str(Path(site).resolve())},
        },
    }


# -- the studies: one per pack, small, and the node's results on them ---------------------------

ALL_ROUTES_NAMES = ("head-ct", "chest-ct", "cxr-nodule", "cxr-pneumonia", "brain-mr")


def _all_routes() -> str:
    from benchmarks.services import default_routes

    return default_routes(*ALL_ROUTES_NAMES)


ALL_ROUTES = _all_routes()
"""The default configuration's routes of every pack, delivering to ``pacs``."""


@dataclass
class Study:
    """One source series sent to the node, and what the node stored back in Orthanc."""

    key: str
    models: tuple[str, ...]
    files: list[Path]
    study_uid: str = ""
    series_uid: str = ""
    results: dict[str, list[Any]] = field(default_factory=dict)
    """Result datasets (pydicom) by SOP Class UID, read back from Orthanc."""
    source_not_drawn: str = ""
    """Why OHIF cannot draw this source's pixels (a defect of the file, not of the node's
    results), or ``""``: the viewer test then checks its results, not its pixels."""

    def __post_init__(self) -> None:
        import pydicom

        first = pydicom.dcmread(self.files[0], stop_before_pixels=True)
        self.study_uid, self.series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)

    def of_class(self, sop_class: str) -> list[Any]:
        return self.results.get(sop_class, [])


def write_studies(out: Path) -> list[Study]:
    """One small study per pack, the real CR from pydicom-data (``RG1_J2KR``) as it is, and
    the same image as a DX (:func:`real_radiograph_as_dx`)."""
    from benchmarks.e2e import real_radiograph
    from models.phantoms import brain_mr, chest_ct, cxr, head_ct

    def dcm(paths: list[Path]) -> list[Path]:
        return sorted(p for p in paths if p.suffix == ".dcm")

    out = Path(out)
    head = dcm(head_ct.write_phantom(head_ct.generate_head_ct(seed=3, slices=8, hematoma=True), out / "head-ct"))
    chest = dcm(chest_ct.write_phantom(chest_ct.generate_chest_ct(seed=1, size=128), out / "chest-ct"))
    radiograph = dcm(cxr.write_phantom(cxr.generate_cxr(seed=101, size=1024, nodules=1, min_diameter_mm=18,
                                                        max_diameter_mm=26, pneumonia=True,
                                                        photometric="MONOCHROME1"), out / "cxr"))
    brain = dcm(p for p in brain_mr.write_phantom(brain_mr.generate_brain_mr(seed=3, slices=16), out / "brain-mr")
                if p.parent.name != "T2")
    real_cr, _ = real_radiograph(out / "real-cr" / "RG1_J2KR.dcm")
    real_dx = real_radiograph_as_dx(out / "real-dx" / "RG1_DX.dcm")
    both_cxr = ("cxr-nodule", "cxr-pneumonia")
    return [
        Study("head-ct", ("head-ct-hematoma",), head),
        Study("chest-ct", ("chest-ct-landmarks",), chest),
        Study("cxr", both_cxr, radiograph),
        Study("brain-mr", ("brain-mr",), brain),
        Study("real-cr", both_cxr, [real_cr], source_not_drawn=ZERO_PIXEL_SPACING),
        Study("real-dx", both_cxr, [real_dx]),
    ]


ZERO_PIXEL_SPACING = (
    "its Pixel Spacing is 0\\0 (the Philips CR wrote no size), which OHIF 3.13.2 takes as pixels "
    "of no size: it draws nothing (the same file with Pixel Spacing 0.2\\0.2 displays, after about "
    "20 s of JPEG 2000 decoding here); 'real-dx' is the same image with a detector's geometry")
"""Why OHIF 3.13.2 cannot draw pydicom-data's real CR ``RG1`` as it is."""


def real_radiograph_as_dx(path: Path) -> Path:
    """pydicom-data's real CR ``RG1`` re-encoded as a DX for presentation, with the geometry a
    DX records (Imager Pixel Spacing about 0.2 mm: a 35 x 43 cm detector at 1841 x 1955, no
    Pixel Spacing), uncompressed, in a new study: the image OHIF can draw."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.Modality, ds.PresentationIntentType = "DX", "FOR PRESENTATION"
    ds.BodyPartExamined = ds.get("BodyPartExamined") or "CHEST"
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def process(studies: list[Study], node: Any, orthanc: Any, timeout: float = 420.0) -> None:
    """Send each study to ``orthanc`` and to ``node`` (dcmtk storescu), wait until each of its jobs is delivered,
    and read the results back from ``orthanc`` into :attr:`Study.results`."""
    import time

    from benchmarks.services import storescu, wait_for

    for study in studies:  # the source goes to the PACS (where the viewer finds it) and to the node
        options = ("-xv",) if study.key == "real-cr" else ()  # the real CR as it is: JPEG 2000
        storescu(study.files, orthanc.dicom_port, called_ae=orthanc.ae_title, options=options)
        storescu(study.files, node.dicom_port, options=options)
    deadline = time.monotonic() + timeout
    for study in studies:
        def done(study: Study = study) -> list[dict[str, Any]] | None:
            jobs = [j for j in node.jobs() if j["series_uid"] == study.series_uid]
            finished = [j for j in jobs if j["state"] in ("delivered", "failed")]
            return finished if len(finished) == len(study.models) else None

        jobs = wait_for(done, max(1.0, deadline - time.monotonic()), what=f"the jobs of {study.key}")
        failed = [j for j in jobs if j["state"] != "delivered"]
        assert not failed, f"{study.key}: jobs not delivered: {failed}"
        assert sorted(j["model"] for j in jobs) == sorted(study.models)
        study.results = orthanc.results_by_class(study.study_uid, study.series_uid)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: ohif_support.py DEST [BASE]   (e.g. var/ohif-site /ohif)")
    site = build_site(Path(sys.argv[1]), *(sys.argv[2:]))
    print(f"OHIF {OHIF_VERSION} rebased to {sys.argv[2] if len(sys.argv) == 3 else '/ohif'} at {site}")
    print("Orthanc configuration to merge:")
    print(json.dumps(orthanc_config(site, *(sys.argv[2:])), indent=2))
