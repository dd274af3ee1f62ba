"""End to end: the real page in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Upload a small espeak-ng corpus, prepare it (random Encodec), train a tiny model for a few steps and watch
the curve, reload the page (it reattaches to the run), synthesize and get a wav. The browser may reach
127.0.0.1 only, so the page must render from the gradio wheel's own assets. A screenshot of every tab is
saved to $VALLE_APP_SCREENSHOTS (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="no headless browser: install Debian's chromium and chromium-driver "
                              "(tools/install_system_deps.sh does)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng makes the test corpus"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the [test] extra")
pytest.importorskip("gradio", reason="gradio is in the [app] extra")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

TINY_MODEL = ("--d-model 64 --nhead 4 --num-layers 2 --num-workers 0 --log-interval 1 --device cpu "
              "--warmup-steps 5 --num-buckets 2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """valle app on a free port with an empty workspace; yields (url, workspace)."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    log = open(tmp_path / "app.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "valle", "app", "--workspace", str(workspace),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("valle app did not start:\n" + (tmp_path / "app.log").read_text())
            time.sleep(0.5)
    yield url, workspace
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1900",
                # offline: every host name but 127.0.0.1 fails to resolve (a CDN asset would not load)
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def corpus(tmp_path) -> list[Path]:
    """One espeak-ng voice, 4 utterances in mixed formats, plus a file without transcript and a silent one."""
    out = tmp_path / "corpus"
    subprocess.run([sys.executable, str(REPO / "egs" / "mini" / "make_corpus.py"), "--output", str(out),
                    "--per-speaker", "4"], check=True, capture_output=True)
    return sorted(p for p in (out / "us_adam").iterdir())


def wait_for(driver, what: str, condition, timeout: float = 120.0, fail: bool = True):
    """condition()'s first true value within timeout; else the test fails (a screenshot saved), or None."""
    start = time.time()
    while time.time() < start + timeout:
        try:
            value = condition()
            if value:
                print(f"{what}: {time.time() - start:.1f} s")  # the phases' times, shown when the test fails
                return value
        except WebDriverException:
            pass
        time.sleep(0.5)
    if not fail:
        return None
    driver.save_screenshot(str(Path(os.environ.get("VALLE_APP_SCREENSHOTS", "/tmp")) / "app-failure.png"))
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def text_of(driver, elem_id: str) -> str:
    return driver.find_element(By.ID, elem_id).text


def type_into(driver, elem_id: str, text: str, enter: bool = False) -> None:
    selector = f"#{elem_id} textarea, #{elem_id} input"  # waited for: an accordion renders its fields late
    field = wait_for(driver, f"the field {elem_id}", lambda: driver.find_elements(By.CSS_SELECTOR, selector), 30)[0]
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)
    if enter:  # a dropdown takes a typed value on Enter
        field.send_keys(Keys.ENTER)
    driver.find_element(By.TAG_NAME, "h2").click()  # Gradio takes a value on blur; a dropdown's list closes


def click(driver, elem_id: str) -> None:
    driver.find_element(By.ID, elem_id).click()


def open_tab(driver, label: str) -> None:
    driver.find_element(By.XPATH, f"//button[@role='tab'][contains(., '{label}')]").click()


def choose(driver, label: str, within: str) -> None:
    driver.find_element(By.XPATH, f"//*[@id='{within}']//label[.//span[normalize-space()='{label}']]").click()


def test_whole_loop_in_the_browser(server, browser, corpus, tmp_path):
    url, workspace = server
    shots = Path(os.environ.get("VALLE_APP_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser.get(url)
    wait_for(browser, "the page", lambda: browser.find_elements(By.ID, "data-prepare"), 60)
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(url) for u in loaded), [u for u in loaded if not u.startswith(url)]

    # a path outside the workspace is refused in the page, in words
    type_into(browser, "data-corpus", "../elsewhere")
    for last in (False, False, True):  # on a loaded machine the first click can land before Gradio binds it
        click(browser, "data-prepare")
        error = wait_for(browser, "the error", lambda: "Error" in text_of(browser, "data-status")
                         and text_of(browser, "data-status"), 40, fail=last)
        if error:
            break
    assert "outside the workspace" in error and "Traceback" not in error

    # Data: upload, prepare with random Encodec weights and the espeak tokenizer (a model from scratch)
    type_into(browser, "data-corpus", "")
    browser.find_element(By.CSS_SELECTOR, "#data-uploads input[type=file]").send_keys(
        "\n".join(str(p) for p in corpus))
    wait_for(browser, "the uploaded files", lambda: "utt003" in text_of(browser, "data-uploads"))
    type_into(browser, "data-codec", "random", enter=True)
    choose(browser, "espeak", within="data-tokenizer")
    click(browser, "data-prepare")
    status = wait_for(browser, "data preparation", lambda: "prepared" in text_of(browser, "data-status")
                      and text_of(browser, "data-status"), 240)
    assert "stage 5 (split): done" in status
    assert "kept: 4 utterances" in browser.find_element(By.CSS_SELECTOR,
                                                        "#data-summary textarea").get_attribute("value")
    rejected = text_of(browser, "data-rejected")
    assert "silence" in rejected and "missing transcript" in rejected
    verdict = text_of(browser, "data-verdict")  # the data check, under the reports
    assert "min of usable speech" in verdict and "see data/check.html" in verdict, verdict
    assert (workspace / "data" / "tokenized" / "cuts_train.jsonl.gz").is_file()
    browser.save_screenshot(str(shots / "app-data.png"))

    # Train: a tiny model from scratch, a few steps; the curve appears and moves on
    open_tab(browser, "Train")
    type_into(browser, "train-init", "none", enter=True)
    type_into(browser, "train-steps", "6")
    type_into(browser, "train-valid", "2")
    type_into(browser, "train-batch", "30")
    type_into(browser, "train-codec", "random", enter=True)  # an audio sample at each validation
    type_into(browser, "train-extra", TINY_MODEL)
    click(browser, "train-start")
    wait_for(browser, "the start", lambda: "started training" in text_of(browser, "train-status"), 30)
    first = wait_for(browser, "the first step", lambda: "train loss" in text_of(browser, "train-progress")
                     and text_of(browser, "train-progress"), 240)

    browser.refresh()  # the page reattaches to the run from its folder
    wait_for(browser, "the reloaded page", lambda: browser.find_elements(By.ID, "data-prepare"), 60)
    open_tab(browser, "Train")
    final = wait_for(browser, "the end of training", lambda: "finished" in text_of(browser, "train-progress")
                     and text_of(browser, "train-progress"), 240)
    assert "step 6" in final and final != first and "best checkpoint" in final
    wait_for(browser, "the loss curve", lambda: browser.find_elements(By.CSS_SELECTOR, "#train-loss canvas, "
                                                                                         "#train-loss svg"), 30)
    assert "validation at step 6" in browser.find_element(By.CSS_SELECTOR, "#train-log textarea").get_attribute("value")
    wait_for(browser, "the validation sample", lambda: "step6.wav" in (browser.execute_script(
        "const a = document.querySelector('#train-sample a[download]'); return a ? a.download : ''") or ""), 30)
    browser.save_screenshot(str(shots / "app-train.png"))

    # Synthesize: an empty text is refused in words; then a wav and its codes
    open_tab(browser, "Synthesize")
    type_into(browser, "synth-ckpt", "exp/ar/best-valid-loss.pt", enter=True)
    type_into(browser, "synth-codec", "random", enter=True)
    click(browser, "synth-run")
    wait_for(browser, "the empty-text error", lambda: "text: empty" in text_of(browser, "synth-status"), 60)
    type_into(browser, "synth-text", "Hello from the browser test.")
    browser.find_element(By.XPATH, "//button[contains(., 'Sampling')]").click()
    type_into(browser, "synth-max-frames", "60")
    click(browser, "synth-run")
    done = wait_for(browser, "the synthesized wav", lambda: "frames in" in text_of(browser, "synth-status")
                    and text_of(browser, "synth-status"), 180)
    assert "Error" not in done
    assert ".npy" in text_of(browser, "synth-files") and ".wav" in text_of(browser, "synth-files")
    wavs = list((workspace / "synth").glob("*.wav"))
    assert len(wavs) == 1 and sf.info(str(wavs[0])).samplerate == 24000
    browser.save_screenshot(str(shots / "app-synthesize.png"))

    # Compare: the trained checkpoint on the test sentence, next to the real recording
    open_tab(browser, "Compare")
    type_into(browser, "compare-ckpts", "exp/ar/best-valid-loss.pt", enter=True)
    type_into(browser, "compare-codec", "random", enter=True)
    type_into(browser, "compare-max-frames", "60")
    choose(browser, "none", within="compare-speaker")
    click(browser, "compare-run")
    report = wait_for(browser, "the comparison", lambda: "sentences of" in text_of(browser, "compare-status")
                      and text_of(browser, "compare-status"), 180)
    assert report.startswith("1 checkpoint(s) on 1 sentences of data/tokenized/cuts_test.jsonl.gz")
    wait_for(browser, "the side-by-side players", lambda: "ar-best-valid-loss" in text_of(browser, "compare-grid"), 60)
    assert (workspace / "eval" / "report.html").is_file()
    browser.save_screenshot(str(shots / "app-compare.png"))
