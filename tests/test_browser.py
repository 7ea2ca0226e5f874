"""A fit watched in a real browser, as a user sees it: `make lab`, then JupyterLab in headless
Chromium (Debian's chromium and chromium-driver, driven by selenium) opens a small notebook, runs
its cells with Shift+Enter, and while the `fit` cell runs reads the picture in that cell's output
again and again: it must change at least twice before the cell ends (one output, redrawn in
place by the kernel launcher's update_display_data). Screenshots of each picture seen go to
target/tmp/browser-live-*.png, and the final state to target/tmp/browser-live-final.png.

Run by `make test` after the kernel tests (the kernel's compile folder is warm by then).
"""
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "target" / "tmp"

CELLS = [
    f':dep fastdet = {{ path = "{ROOT}" }}',
    "use fastdet::prelude::*;",
    """let trn = Pascal::open(fastdet::data::sample_root())?.json("train")?;
let md = ImageData::from_dataset(trn, Task::SingleObject.target(), tfms_from_model(32, vec![], CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;
let mut learn = Learner::for_task(md, Task::SingleObject, LearnerOpts::new(None, "models").arch(Arch::ResNet18))?;""",
    # About 10 s on 2 cores: the live output is redrawn every 2 s and at epoch ends (at most
    # one redraw per 0.5 s).
    "learn.fit(1e-3, 60, FitOpts::default())?",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """`make lab` on a folder holding the test notebook: (base URL, token, notebook name)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "fastdet-rust", "display_name": "Rust (fastdet)", "language": "rust"}
    nbformat.write(nb, tmp_path / "live.ipynb")
    port, token = free_port(), "fastdet-browser-test"
    env = dict(os.environ, JUPYTER_TOKEN=token)
    env.pop("DISPLAY", None)
    p = subprocess.Popen(["make", "-s", "lab", f"LAB_PORT={port}", f"LAB_DIR={tmp_path}"], cwd=ROOT, env=env,
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    threading.Thread(target=lambda: log.extend(p.stdout), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        t = time.time()
        while True:
            assert p.poll() is None, "make lab exited:\n" + "".join(log)
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5).read()
                break
            except OSError:
                assert time.time() - t < 180, "make lab did not answer:\n" + "".join(log)
                time.sleep(1)
        yield base, token, "live.ipynb"
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are missing: scripts/test_deps.sh (make test) installs them as root"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1400,1800"]:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    try:
        yield d
    finally:
        d.quit()


def test_a_fit_in_jupyterlab_redraws_its_picture_while_it_runs(lab, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, name = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("browser-live-*.png"):
        old.unlink()
    d = browser
    d.get(f"{base}/lab/tree/{name}?token={token}")
    wait = WebDriverWait(d, 180)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell .cm-content")))
    # The kernel is up when the toolbar names it and says it is idle.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"))
    # JupyterLab renders a notebook's cells in batches after the first one appears: wait for all.
    try:
        WebDriverWait(d, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")) == len(CELLS))
    except TimeoutException:
        n = len(d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell"))
        pytest.fail(f"JupyterLab shows {n} of the notebook's {len(CELLS)} cells after 60 s")
    for no in d.find_elements(By.XPATH, "//button[.//*[text()='No'] or text()='No']"):  # "get Jupyter news?"
        no.click()
    # Run > Run All Cells, as a user would.
    [m for m in d.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item") if m.text.strip() == "Run"][0].click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "li[data-command='runmenu:run-all']"))).click()

    fit = lambda: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")[len(CELLS) - 1]
    prompt = lambda: fit().find_element(By.CSS_SELECTOR, ".jp-InputPrompt").text.strip()
    seen, t0 = [], time.time()  # (seconds, picture hash) while the fit cell runs
    started = None
    while time.time() - t0 < 300:
        try:
            p = prompt()
            prompts = [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]
            imgs = fit().find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
            src = (imgs[0].get_attribute("src") or "") if imgs else ""
        except StaleElementReferenceException:
            continue  # the output was redrawn between two reads: read it again
        if not started and time.time() - t0 > 10 and "[*]:" not in prompts:
            break  # nothing runs and the fit never started: an earlier cell failed
        if p == "[*]:" and imgs:
            started = started or time.time()
            h = hashlib.sha1(src.encode()).hexdigest()
            if not seen or seen[-1][1] != h:
                seen.append((time.time() - t0, h))
                d.execute_script("arguments[0].scrollIntoView()", fit())
                d.save_screenshot(str(SHOTS / f"browser-live-{len(seen)}.png"))
        if p not in ("[*]:", "[ ]:", "") and started:
            break
        time.sleep(0.2)
    d.execute_script("arguments[0].scrollIntoView()", fit())
    d.save_screenshot(str(SHOTS / "browser-live-final.png"))
    final = fit().find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
    text = " ".join(o.text for o in final)
    errors = [e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")]
    assert started, f"the fit cell never showed a picture; cells' errors: {errors}"
    assert len(seen) >= 3, f"the fit's picture while it ran: {seen} (prompt now {prompt()!r}); output: {text[:500]}"
    # Still one output block (not one per redraw), which ends as the report, plus the value's line.
    assert "fit: 60 epochs" in text and "output above" in text, text[:800]
    assert len(fit().find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")) >= 1
    assert not fit().find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output progress"), "the bar is gone at the end"
