"""The status page and the results page, in a real browser.

A real node (``ainode serve``) processes a head CT phantom and a brain MR phantom; its
destination is a real Orthanc that is not started yet, so with ``max_attempts = 1`` every
result becomes a dead letter. Playwright drives Debian's Chromium: the results page is
checked by pixel statistics of screenshots (the SEG mask's colour appears at opacity 1,
vanishes at opacity 0, and follows the slice), the tumour surface is rotated, and on the
status page the replay button is clicked once Orthanc is up: the jobs go to delivered.

With a token configured, a browser logs in at ``/login`` and carries a session cookie:
unauthenticated pages redirect there, a wrong token is refused without echoing anything,
the right one opens the status page whose buttons work, and logging out locks it again.
"""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from models.phantoms.brain_mr import generate_brain_mr, write_phantom as write_brain_mr
from models.phantoms.head_ct import generate_head_ct, write_phantom as write_head_ct
from node.http.auth import AccessMode, BearerAuth
from node.metrics import Metrics
from node.states import FailureStage, JobState, SeriesState
from node.store import JobStore, open_store
from node.http.web import WebServer, create_app
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, storescu, wait_for

pytestmark = pytest.mark.e2e

BRAIN_MR_ROUTE = """
[[routes]]
name = "brain-mr"
model = "brain-mr"
destinations = ["pacs"]
match = { Modality = "MR", BodyPartExamined = "BRAIN", SeriesDescription = "re:^T1" }
"""
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HEAD_CT_SLICES = 12


class Scene:
    """The node, its (not yet started) Orthanc, and the two jobs."""

    def __init__(self, node: NodeProcess, orthanc: OrthancServer, head_ct: dict[str, Any], brain_mr: dict[str, Any],
                 shots: Path) -> None:
        self.node, self.orthanc, self.head_ct, self.brain_mr, self.shots = node, orthanc, head_ct, brain_mr, shots


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("pages")
    orthanc = OrthancServer(tmp / "orthanc")  # its ports are chosen, nothing listens yet
    dicom_port, http_port = free_port(), free_port()
    node = NodeProcess(tmp / "node", node_config(dicom_port, http_port, orthanc, HEAD_CT_ROUTE + BRAIN_MR_ROUTE,
                                                 quiet_seconds=1.0, max_attempts=1))
    node.dicom_port = dicom_port
    node.start(http_port)
    try:
        head = sorted(p for p in write_head_ct(generate_head_ct(seed=3, slices=HEAD_CT_SLICES, hematoma=True),
                                               tmp / "head") if p.suffix == ".dcm")
        brain = sorted(p for p in write_brain_mr(generate_brain_mr(seed=3), tmp / "brain") if p.suffix == ".dcm")
        storescu(head, dicom_port)
        storescu(brain, dicom_port)

        def both_dead() -> dict[str, dict[str, Any]] | None:
            jobs = {j["model"]: j for j in node.jobs()}
            done = [j for j in jobs.values() if j["state"] == JobState.FAILED and j["stage"] == FailureStage.DELIVER]
            return jobs if len(done) == 2 else None

        jobs = wait_for(both_dead, 240, what="both jobs written and their results dead (no PACS listening)")
        shots = tmp / "screenshots"
        shots.mkdir()
        yield Scene(node, orthanc, jobs["head-ct-hematoma"], jobs["brain-mr"], shots)
    finally:
        node.stop()
        orthanc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _coloured(pixels: np.ndarray) -> int:
    """Pixels that are clearly not grey (the sources are greyscale: only overlays have colour)."""
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def _red(pixels: np.ndarray) -> int:
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > 120) & (r - np.maximum(g, b) > 60)).sum())


def _images_loaded(page: Page) -> None:
    page.wait_for_function("""() => [...document.querySelectorAll('#stack img')]
        .every(img => img.complete && img.naturalWidth > 0)""", timeout=15_000)


def _set(page: Page, selector: str, value: str) -> None:
    page.locator(selector).fill(value)  # a range input: sets the value and fires input and change


def _stack(page: Page, name: str, shots: Path) -> np.ndarray:
    _images_loaded(page)
    path = shots / f"{name}.png"
    page.locator("#stack").screenshot(path=str(path))
    return _pixels(path.read_bytes())


def test_results_page_overlays_the_seg_mask_follows_the_slice_and_fades_with_the_slider(scene: Scene, page: Page):
    job_id = scene.head_ct["id"]
    page.goto(f"{scene.node.http_url}/jobs/{job_id}")
    assert f"/jobs/{job_id}" in page.url and "1.2." not in page.url
    marked = [int(i) for i in page.locator("#layer option[value=seg]").get_attribute("data-slices").split(",")]
    assert marked and len(marked) < HEAD_CT_SLICES, marked  # the hematoma is on some slices, not all
    start = int(page.locator("#viewer").get_attribute("data-start"))
    assert start in marked

    _set(page, "#opacity", "1")
    full = _stack(page, "head-ct-opacity-1", scene.shots)
    _set(page, "#opacity", "0")
    none = _stack(page, "head-ct-opacity-0", scene.shots)
    assert _red(full) > 200, "the SEG mask is drawn in red at opacity 1"
    assert _coloured(none) < 20, "at opacity 0 only the greyscale source shows"
    _set(page, "#opacity", "0.5")
    half = _stack(page, "head-ct-opacity-half", scene.shots)
    assert 0 < _red(half) and _coloured(half) > 200

    # Scroll to a slice without hematoma: the overlay follows the slice and shows nothing there.
    _set(page, "#opacity", "1")
    empty = next(i for i in range(HEAD_CT_SLICES) if i not in marked)
    steps = empty - start
    page.locator("#stack").hover()
    for _ in range(abs(steps)):
        page.mouse.wheel(0, 100 if steps > 0 else -100)
    page.wait_for_function(f"document.getElementById('viewer').dataset.current === '{empty}'")
    assert page.locator("#slice-label").inner_text() == f"{empty + 1} / {HEAD_CT_SLICES}"
    assert _red(_stack(page, "head-ct-unmarked-slice", scene.shots)) == 0
    page.locator("#stack").click()  # focus off the sliders: arrow keys change the slice
    page.keyboard.press("ArrowLeft" if empty > 0 else "ArrowRight")
    page.wait_for_function(f"document.getElementById('viewer').dataset.current === '{empty - 1 if empty else 1}'")
    _set(page, "#slice", str(marked[len(marked) // 2]))
    assert _red(_stack(page, "head-ct-marked-slice", scene.shots)) > 0

    # The heatmap layer (secondary captures): colour on the marked slice too.
    page.locator("#layer").select_option("heatmap")
    assert _coloured(_stack(page, "head-ct-heatmap", scene.shots)) > 200
    page.locator("#layer").select_option("seg")
    _set(page, "#slice", str(start))
    _set(page, "#opacity", "0.6")
    _images_loaded(page)
    page.screenshot(path=str(scene.shots / "results-page.png"), full_page=True)

    findings = page.locator("#findings").inner_text()
    assert "Number of hematoma patches" in findings and "Present" in findings
    assert "no key slices" in page.locator("#key-slices").inner_text()
    timeline = page.locator("#job .timeline").inner_text()
    assert all(state in timeline for state in ("queued", "running", "written", "failed"))
    assert "inference" in page.locator("#job .timings").inner_text()


def test_brain_mr_page_shows_the_tumour_and_its_surface_rotates(scene: Scene, page: Page):
    page.goto(f"{scene.node.http_url}/jobs/{scene.brain_mr['id']}")
    _set(page, "#opacity", "1")
    pixels = _stack(page, "brain-mr-start", scene.shots)
    tumour = (pixels[..., 0] > 180) & (pixels[..., 2] > 180) & (pixels[..., 1] < 120)  # segment 6: magenta
    assert tumour.sum() > 20, "the viewer opens on the tumour, drawn in its segment's colour"
    assert "Tumor" in page.locator(".legend").inner_text()
    assert "Volume" in page.locator("#findings").inner_text()

    page.wait_for_selector("#mesh[data-ready]", timeout=15_000)
    assert "triangles" in page.locator("#mesh-info").inner_text()
    _set(page, "#opacity", "0.5")
    _images_loaded(page)
    page.screenshot(path=str(scene.shots / "results-page-brain-mr.png"), full_page=True)
    canvas = page.locator("#mesh")
    before = _pixels(canvas.screenshot(path=str(scene.shots / "surface-before.png")))
    assert _red(before) > 500, "the surface is drawn"
    box = canvas.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 120, y + 40, steps=8)
    page.mouse.up()
    after = _pixels(canvas.screenshot(path=str(scene.shots / "surface-after.png")))
    assert _red(after) > 500
    changed = (np.abs(after - before).sum(axis=2) > 30).mean()
    assert changed > 0.02, f"dragging rotates the surface ({changed:.3%} of the pixels changed)"


def test_status_page_shows_the_node_and_replays_dead_letters(scene: Scene, page: Page):
    page.goto(f"{scene.node.http_url}/")
    assert page.locator("td[data-kind=jobs][data-state=failed] b").inner_text() == "2"
    assert page.locator("#engines").inner_text().count("onnxruntime-cpu") == 2
    assert "free" in page.locator("#disk").inner_text() and "watermark" in page.locator("#disk").inner_text()
    assert page.locator("#failures").inner_text().count("deliver") == 2
    rows = page.locator("#dead-letters tr.dead-letter")
    assert rows.count() == 2
    assert "association" in rows.first.inner_text()
    page.locator(f"details[data-job='{scene.head_ct['id']}'] summary").click()
    assert "written" in page.locator(f"details[data-job='{scene.head_ct['id']}'] .timeline").inner_text()
    page.screenshot(path=str(scene.shots / "status-page-dead-letters.png"), full_page=True)
    html = page.content()
    assert scene.head_ct["series_uid"] not in html, "UIDs are shortened on the page"

    dead = int(page.locator("td[data-kind=results][data-state=dead] b").inner_text())
    # head CT: SEG, SR and one overlay per affected slice (how many slices is the model's
    # call); brain MR: SEG, SR and the tumour's STL
    assert dead >= 3 + 3, dead

    scene.orthanc.start()  # the PACS is back: replaying now delivers
    page.locator("#replay-all").click()
    page.wait_for_function("document.getElementById('flash').textContent.startsWith('dead letters requeued')")
    requeued = int(page.locator("#flash").inner_text().rsplit(":", 1)[1])
    assert requeued == dead, (requeued, dead)
    # The page refreshes itself: wait there (not in the API) for both jobs to be delivered.
    page.wait_for_function("""() => {
        const cell = document.querySelector('td[data-kind=jobs][data-state=delivered] b');
        return cell && cell.textContent === '2'; }""", timeout=120_000)
    assert page.locator("#dead-letters").inner_text().strip().endswith("none")
    assert page.locator("td[data-kind=results][data-state=dead] b").inner_text() == "0"
    assert len(scene.orthanc.get("/instances")) == requeued
    page.screenshot(path=str(scene.shots / "status-page.png"), full_page=True)


def test_pages_and_images_need_what_the_api_needs(scene: Scene, tmp_path: Path):
    """With a token configured, no page and no image is served without it (same policy as the API)."""
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    store = open_store(None, scene.node.workdir / "data")
    health = lambda: {"status": "ok", "disk": {}, "accepting_instances": True}  # noqa: E731
    job_id = scene.head_ct["id"]
    paths = ["/", "/ui/status-body", f"/jobs/{job_id}", f"/jobs/{job_id}/slices/0.png",
             f"/jobs/{job_id}/layers/seg/0.png", f"/jobs/{scene.brain_mr['id']}/surface.stl"]
    try:
        with TestClient(create_app(store, Metrics(), health, auth=BearerAuth(AccessMode.TOKEN, token))) as client:
            for path in paths:
                assert client.get(path).status_code == 401, path
                answer = client.get(path, headers={"Authorization": "Bearer s3cret-token"})
                assert answer.status_code == 200, path
            assert client.get(f"/jobs/{job_id}/slices/999.png",
                              headers={"Authorization": "Bearer s3cret-token"}).status_code == 404
        with TestClient(create_app(store, Metrics(), health, auth=BearerAuth(AccessMode.CLOSED))) as client:
            assert all(client.get(path).status_code == 401 for path in paths)
    finally:
        store.close()
    # The PNG is pixels only: nothing of the source's header goes with it.
    png = httpx.get(f"{scene.node.http_url}/jobs/{job_id}/slices/0.png", timeout=10).content
    source = pydicom.dcmread(sorted((scene.node.workdir / "data" / "spool" / "instances").iterdir())[0])
    assert str(source.PatientID).encode() not in png and str(source.PatientName).encode() not in png


LOGIN_TOKEN = "page-token-5f2b9c0e7d1a4b68"


def _failed_inference_job(store: JobStore) -> int:
    store.add_instance("1.2.97.1.1", "1.2.840.10008.5.1.4.1.1.2", "/x", "MOD")
    store.index_instance("1.2.97.1.1", "1.2.97.1", "1.2.3", {}, 0.0)
    store.set_series_state("1.2.97.1", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.97.1", [("r", "head-ct-hematoma", ["pacs"])])
    store.claim_jobs("w", 1, 60)
    store.fail_job(job_id, FailureStage.INFERENCE, "RuntimeError: engine crashed", owner="w")
    return job_id


@pytest.fixture
def token_node(tmp_path: Path) -> Iterator[tuple[str, JobStore]]:
    token_file = tmp_path / "token"
    token_file.write_text(LOGIN_TOKEN + "\n")
    store = JobStore(tmp_path / "db.sqlite")
    health = lambda: {"status": "ok", "disk": {}, "accepting_instances": True}  # noqa: E731
    web = WebServer("127.0.0.1", 0, store, Metrics(), health, auth=BearerAuth(AccessMode.TOKEN, token_file))
    web.start()
    try:
        yield f"http://127.0.0.1:{web.port}", store
    finally:
        web.stop()
        store.close()


def test_login_session_cookie_replay_and_logout(token_node, browser: Browser, tmp_path: Path):
    url, store = token_node
    job_id = _failed_inference_job(store)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{url}/jobs/{job_id}")  # not logged in: sent to the login page, which remembers the target
        assert page.url == f"{url}/login?next=/jobs/{job_id}"
        page.goto(f"{url}/")
        assert page.url == f"{url}/login?next=/"
        page.screenshot(path=str(tmp_path / "login-page.png"))

        page.locator("#token").fill("not-the-token")
        page.locator("#login-button").click()
        assert "not valid" in page.locator("#login-error").inner_text()
        assert page.url.startswith(f"{url}/login") and "not-the-token" not in page.content() + page.url
        assert LOGIN_TOKEN not in page.content() and not context.cookies()

        page.locator("#token").fill(LOGIN_TOKEN)
        page.locator("#login-button").click()
        page.wait_for_url(f"{url}/")
        [cookie] = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain HTTP here
        assert LOGIN_TOKEN not in cookie["value"] and LOGIN_TOKEN[:8] not in cookie["value"]
        assert 11.9 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
        assert page.evaluate("document.cookie") == "", "scripts cannot read the session"

        # The page's buttons POST with the cookie (same origin): run the failed job again.
        page.locator("#failures button.retry").click()
        page.wait_for_function("document.getElementById('flash').textContent === 'queued again: 1'")
        assert store.get_job(job_id).state == JobState.QUEUED
        page.screenshot(path=str(tmp_path / "status-page-logged-in.png"), full_page=True)

        # The same cookie from elsewhere: no Origin, or another origin, is refused before anything is done.
        jar = {"ainode_session": cookie["value"]}
        for headers in ({}, {"Origin": "http://localhost:1"}, {"Origin": f"http://localhost:{url.rsplit(':', 1)[1]}"}):
            forged = httpx.post(f"{url}/api/deadletters/retry", cookies=jar, headers=headers, timeout=5)
            assert forged.status_code == 403 and LOGIN_TOKEN not in forged.text, headers
        assert httpx.get(f"{url}/api/jobs", cookies=jar, timeout=5).status_code == 200

        page.locator("#logout").click()
        page.wait_for_url(f"{url}/login")
        assert not context.cookies()
        page.goto(f"{url}/")
        assert page.url == f"{url}/login?next=/", "locked again"
        assert httpx.get(f"{url}/api/jobs", cookies=jar, timeout=5).status_code == 401, "the session is revoked"
        assert httpx.get(f"{url}/api/jobs", headers={"Authorization": f"Bearer {LOGIN_TOKEN}"},
                         timeout=5).status_code == 200, "the bearer header still works"
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_login_refuses_cross_origin_posts_and_foreign_redirects(token_node):
    url, _ = token_node
    form = {"token": LOGIN_TOKEN, "next": "//evil.example/x"}
    assert httpx.post(f"{url}/login", data=form, timeout=5).status_code == 403  # no Origin
    assert httpx.post(f"{url}/login", data=form, headers={"Origin": "http://evil.example"}, timeout=5).status_code == 403
    answer = httpx.post(f"{url}/login", data=form, headers={"Origin": url}, timeout=5)
    assert answer.status_code == 303 and answer.headers["location"] == "/", "never redirected off the node"
    assert httpx.post(f"{url}/logout", headers={"Origin": "http://evil.example"}, timeout=5).status_code == 403
    api = httpx.get(f"{url}/api/jobs", headers={"Accept": "text/html"}, timeout=5)
    assert api.status_code == 401, "the API answers 401, only pages redirect"
