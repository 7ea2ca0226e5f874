"""The interactive session, driven cell by cell through jupyter_client as a user would drive it:
`make lab` starts, two kernels work at once, how long rebuilds take, and a fit stopped with the
stop button (a real interrupt) keeps the learner; after a kernel restart one cell restores it.

Run by `make test` after the notebook test (which warms the compile folders). Times are printed
in a table at the end, beside the numbers measured before this work; they are never asserted.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "fastdet-rust"
NOTEBOOKS = ROOT / "notebooks"
DEP = ':dep fastdet = { path = ".." }'
PRELUDE = "use fastdet::prelude::*;"

# name -> (seconds now, what was measured before this work)
TIMES = {}
BEFORE = {
    "new machine: first cell (make setup warmed the kernel)": "278 s",
    "compiling the kernel from nothing (make setup, once)": "in cell 1",
    "warm kernel: first cell": "12-13 s",
    "warm kernel: the prelude cell": "11-12 s",
    "a lesson cell without training (draw_idx)": "-",
    "a lesson cell without training (show_batch)": "-",
    "after a one-line change in src/: first cell": "63 s",
    "after a one-line change in src/: next cell": "12 s",
    "two kernels at once: first kernel's first cell": "failed",
    "two kernels at once: second kernel's first cell": "failed",
}
GOALS = {
    "new machine: first cell (make setup warmed the kernel)": 150,
    "warm kernel: first cell": 10,
    "after a one-line change in src/: first cell": 30,
    "warm kernel: the prelude cell": 2,
    "a lesson cell without training (draw_idx)": 2,
    "a lesson cell without training (show_batch)": 2,
}


class Cell:
    def __init__(self, text, error, seconds, images):
        self.text, self.error, self.seconds, self.images = text, error, seconds, images

    def ok(self):
        assert self.error is None, self.error
        return self


class Kernel:
    """One kernel of the Rust (fastdet) kernelspec, driven cell by cell."""

    def __init__(self, cwd=NOTEBOOKS, kernel_name=KERNEL, ksm=None):
        kw = {"kernel_name": kernel_name}
        if ksm is not None:
            kw["kernel_spec_manager"] = ksm
        self.km = KernelManager(**kw)
        self.km.start_kernel(cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code, timeout=1200, when=None, then=None):
        """Execute `code`; when `when(text so far)` first holds, call `then()` (an interrupt)."""
        msg_id = self.kc.execute(code)
        out, err, images, fired = [], None, 0, False
        t = time.time()
        while True:
            left = timeout - (time.time() - t)
            assert left > 0, f"cell timed out after {timeout} s: {code[:80]}\n{''.join(out)[-2000:]}"
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 5))
            except Exception:  # queue.Empty: no message for 5 s
                if when and not fired and when("".join(out)):
                    fired = True
                    then()
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, c = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(c["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(c["data"].get("text/plain", ""))
                images += "image/png" in c["data"]
            elif kind == "error":
                err = f"{c['ename']}: {c['evalue']}\n" + "\n".join(c.get("traceback", []))
            elif kind == "status" and c["execution_state"] == "idle":
                break
            if when and not fired and when("".join(out)):
                fired = True
                then()
        return Cell("".join(out), err, time.time() - t, images)

    def restart(self):
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=120)

    def shutdown(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# 0. make lab


def test_make_lab_starts_and_serves_the_kernel_and_notebooks():
    port, token = free_port(), "fastdet-test"
    env = dict(os.environ, JUPYTER_TOKEN=token)
    env.pop("DISPLAY", None)
    p = subprocess.Popen(["make", "-s", "lab", f"LAB_PORT={port}"], cwd=ROOT, env=env, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    threading.Thread(target=lambda: log.extend(p.stdout), daemon=True).start()
    try:
        def get(path):
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r)

        t = time.time()
        while True:
            assert p.poll() is None, "make lab exited:\n" + "".join(log)
            try:
                specs = get("/api/kernelspecs")
                break
            except OSError:
                assert time.time() - t < 180, "make lab did not answer:\n" + "".join(log)
                time.sleep(1)
        assert KERNEL in specs["kernelspecs"], specs["kernelspecs"].keys()
        assert specs["kernelspecs"][KERNEL]["spec"]["display_name"] == "Rust (fastdet)"
        names = {c["name"] for c in get("/api/contents/")["content"]}
        want = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
        assert len(want) == 6 and want <= names, names
        assert f"127.0.0.1:{port}" in "".join(log)
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# 1. Several notebooks at once


def first_cells(name, n):
    nb = json.loads((NOTEBOOKS / name).read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    return code[:n]


def test_two_kernels_at_once_each_get_their_own_compile_folder():
    results = {}

    def session(name):
        k = Kernel()
        try:
            cells = [k.run(c) for c in first_cells(name, 3)]
            check = k.run("let n: usize = 2 + 1;\nn")
            results[name] = (cells, check)
        finally:
            k.shutdown()

    threads = [threading.Thread(target=session, args=(n,)) for n in ("04_single_object_detection.ipynb", "06_ssd.ipynb")]
    for t in threads:
        t.start()
        time.sleep(0.5)
    for t in threads:
        t.join()
    assert len(results) == 2
    for name, (cells, check) in results.items():
        for c in cells:
            c.ok()
        assert check.ok().text.strip() == "3", check.text
        assert "quick mode" in cells[1].text, cells[1].text
    firsts = sorted(results[n][0][0].seconds for n in results)
    TIMES["two kernels at once: first kernel's first cell"] = firsts[0]
    TIMES["two kernels at once: second kernel's first cell"] = firsts[1]
    pool = Path(KernelSpecManager().get_kernel_spec(KERNEL).env["FASTDET_EVCXR_POOL"])
    assert len(list(pool.glob("slot-*/target"))) >= 2, "two kernels, two compile folders"


# ---------------------------------------------------------------------------------------------
# 2. Rebuild times


def test_rebuild_times():
    k = Kernel()
    try:
        TIMES["warm kernel: first cell"] = k.run(DEP).ok().seconds
        # A new machine's kernel is this warm one: make setup compiled it (scripts/warm_kernel.py).
        TIMES["new machine: first cell (make setup warmed the kernel)"] = TIMES["warm kernel: first cell"]
        TIMES["warm kernel: the prelude cell"] = k.run(PRELUDE).ok().seconds
        k.run('let trn = Pascal::open(fastdet::data::sample_root())?.json("train")?;').ok()
        c = k.run("draw_idx(&trn, 0)?").ok()
        assert c.images == 1
        TIMES["a lesson cell without training (draw_idx)"] = c.seconds
        k.run("let md = ImageData::from_dataset(trn.clone(), TargetKind::AllBoxes, tfms_from_model(224, lesson_augmentations(), "
              "CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;").ok()
        c = k.run("show_batch(&md.trn_dl.one_batch()?, &md.classes, 4)?").ok()
        assert c.images == 1
        TIMES["a lesson cell without training (show_batch)"] = c.seconds
    finally:
        k.shutdown()

    # A one-line change, in a copy of the crate (the working tree is left alone).
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastdet-kernel-test-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for d in ("src", "assets", "data", "notebooks"):
            shutil.copytree(ROOT / d, tmp / d, symlinks=True)
        for f in ("Cargo.toml", "Cargo.lock"):
            shutil.copy2(ROOT / f, tmp / f)
        k = Kernel(cwd=tmp / "notebooks")
        k.run(DEP).ok()  # the copy compiles once
        k.shutdown()
        with open(tmp / "src" / "util.rs", "a") as f:
            f.write("\n/// A line added by the kernel test.\npub fn kernel_test_stamp() -> u64 { 1 }\n")
        k = Kernel(cwd=tmp / "notebooks")
        TIMES["after a one-line change in src/: first cell"] = k.run(DEP).ok().seconds
        TIMES["after a one-line change in src/: next cell"] = k.run(PRELUDE).ok().seconds
        k.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Compiling from nothing, as make setup does once on a new machine: a kernelspec whose pool
    # is empty.
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    kdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastdet-cold-{os.getpid()}"
    shutil.rmtree(kdir, ignore_errors=True)
    try:
        (kdir / "kernels" / "fastdet-cold").mkdir(parents=True)
        env = dict(spec.env, FASTDET_EVCXR_POOL=str(kdir / "pool"))
        (kdir / "kernels" / "fastdet-cold" / "kernel.json").write_text(json.dumps(
            {"argv": spec.argv, "display_name": "cold", "language": "rust", "interrupt_mode": "signal", "env": env}))
        ksm = KernelSpecManager(kernel_dirs=[str(kdir / "kernels")])
        k = Kernel(kernel_name="fastdet-cold", ksm=ksm)
        TIMES["compiling the kernel from nothing (make setup, once)"] = k.run(DEP, timeout=1800).ok().seconds
        k.shutdown()
    finally:
        shutil.rmtree(kdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 3. Training you can stop without losing it

SETUP = """let trn = Pascal::open(fastdet::data::sample_root())?.json("train")?;
let md = ImageData::from_dataset(trn, Task::Detection.target(), tfms_from_model(32, vec![], CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;"""


def test_stop_button_keeps_the_learner_and_restart_restores_it(tmp_path):
    models = tmp_path / "models"
    k = Kernel()
    try:
        k.run(DEP).ok()
        k.run(PRELUDE).ok()
        k.run(SETUP).ok()
        k.run(f'let mut learn = Learner::for_task(md.clone(), Task::Detection, LearnerOpts::new(None, "{models}").arch(Arch::ResNet18))?;').ok()
        # A long fit, stopped with Jupyter's interrupt once two epochs are done.
        rows = lambda text: len(re.findall(r"^\s+\d+\s+[\d.]+\s+[\d.]+", text, re.M))
        t0 = time.time()
        fit = k.run("learn.fit(1e-3, 500, FitOpts::default())?", when=lambda text: rows(text) >= 2, then=k.km.interrupt_kernel)
        fit.ok()
        assert "stopped during epoch" in fit.text, fit.text[-2000:]
        assert time.time() - t0 < 600
        done = int(k.run("learn.epochs_done()").ok().text.strip())
        assert done >= 2 and rows(fit.text) >= done - 1, fit.text
        # The learner lives on: continue with another learning rate.
        again = k.run("learn.fit(1e-4, 1, FitOpts::default())?; learn.epochs_done()").ok()
        assert again.text.strip().endswith(str(done + 1)), again.text

        # Kill the kernel (restart) and restore the last state in one cell.
        k.restart()
        k.run(DEP).ok()
        k.run(PRELUDE).ok()
        k.run(SETUP).ok()
        back = k.run(f'let mut learn = Learner::restore_last(md.clone(), "{models}")?;\nlearn.epochs_done()').ok()
        assert back.text.strip().endswith(str(done + 1)), back.text
        same = k.run(f"""let f = std::fs::read_dir("{models}/last")?.flatten().map(|e| e.path())
    .find(|p| p.extension().is_some_and(|x| x == "safetensors")).ok_or(Error::Invalid("no weights".into()))?;
let saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&f)?.into_iter().collect();
learn.vs.variables().iter().all(|(n, t)| saved.get(n).is_some_and(|s| t.equal(s)))""").ok()
        assert same.text.strip() == "true", same.text

        # A fit in the background: watch it, stop it, change the learning rate, continue.
        k.run("let h = learn.fit_background(1e-3, 500, FitOpts::default());").ok()
        k.run("while h.progress().losses.len() < 3 { std::thread::sleep(std::time::Duration::from_millis(50)); }").ok()
        prog = k.run("h").ok()
        assert "fit in the background" in prog.text and prog.images == 1, prog.text
        k.run("h.stop();\nlet mut learn = h.wait()?;").ok()
        cont = k.run("let before = learn.epochs_done();\nlearn.fit(1e-4, 1, FitOpts::default())?;\nlearn.epochs_done() - before").ok()
        assert cont.text.strip().endswith("1"), cont.text
    finally:
        k.shutdown()


def test_print_times():
    """The table of times (run last): the numbers of this run beside those before this work."""
    print("\n\nkernel timings (printed, never asserted)")
    print(f"{'what':<52} {'before':>10} {'now':>10} {'goal':>8}  met?")
    for name, before in BEFORE.items():
        now = TIMES.get(name)
        goal = GOALS.get(name)
        met = "-" if now is None or goal is None else ("yes" if now <= goal else "NO")
        now_s = "-" if now is None else f"{now:.1f} s"
        goal_s = "-" if goal is None else f"<= {goal} s"
        print(f"{name:<52} {before:>10} {now_s:>10} {goal_s:>8}  {met}")
