"""The interactive session, driven cell by cell through jupyter_client as a user would drive it:
`make lab` starts, two kernels work at once, the notebooks' first cells and two drawing cells
work in a warm kernel, a fit shows one output that updates in place while it runs and ends as
its report, a cell's `display` calls arrive while it runs, and a fit stopped with the stop button
(a real interrupt) keeps the learner; after a kernel restart one cell restores it.

Run by `make test` after the notebook test. How long these take is measured by
`make bench-kernel` (benches/kernel.py), not here.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from kernel_session import KERNEL, NOTEBOOKS, Kernel  # noqa: E402

DEP = ':dep fastdet = { path = ".." }'
PRELUDE = "use fastdet::prelude::*;"


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
        assert len(want) == 7 and want <= names, names
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
    pool = Path(KernelSpecManager().get_kernel_spec(KERNEL).env["FASTDET_EVCXR_POOL"])
    assert len(list(pool.glob("slot-*/target"))) >= 2, "two kernels, two compile folders"


# ---------------------------------------------------------------------------------------------
# 2. A warm kernel: the notebook's real first cells, and lesson cells that draw


def test_first_cells_and_drawing_cells_in_a_warm_kernel():
    k = Kernel()
    try:
        for c in first_cells("01_pascal.ipynb", 3):
            k.run(c).ok()
        c = k.run("draw_idx(&trn, 0)?").ok()
        assert c.images == 1, c.text
        k.run("let md = ImageData::from_dataset(trn.clone(), TargetKind::AllBoxes, tfms_from_model(224, lesson_augmentations(), "
              "CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;").ok()
        c = k.run("show_batch(&md.trn_dl.one_batch()?, &md.classes, 4)?").ok()
        assert c.images == 1, c.text
    finally:
        k.shutdown()


SETUP = """let trn = Pascal::open(fastdet::data::sample_root())?.json("train")?;
let md = ImageData::from_dataset(trn, Task::SingleObject.target(), tfms_from_model(32, vec![], CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;"""


# ---------------------------------------------------------------------------------------------
# 3. Watching a fit live, and pictures while a cell runs

def test_fit_updates_one_output_in_place_and_ends_as_the_report(tmp_path):
    k = Kernel()
    try:
        k.run(DEP).ok()
        k.run(PRELUDE).ok()
        k.run(SETUP).ok()
        k.run(f'let mut learn = Learner::for_task(md.clone(), Task::SingleObject, LearnerOpts::new(None, "{tmp_path}").arch(Arch::ResNet18))?;').ok()
        fit = k.run("learn.fit(1e-3, 30, FitOpts::default())?").ok()
        shown = [m for m in fit.messages if m[1] == "display_data"]
        assert len(shown) == 1 and shown[0][2], f"one live output with a display_id: {fit.messages}"
        t0, did = shown[0][0], shown[0][2]
        ups = fit.updates(did)
        assert len(ups) >= 3, f"{len(ups)} updates while the fit ran {fit.seconds:.1f} s"
        assert ups[0][0] - t0 <= 5, f"first update {ups[0][0] - t0:.1f} s after the fit began"
        assert len({m[2] for m in fit.messages if m[2]}) == 1, "every update goes to the same output"
        # While it ran: a bar and the table so far; at the end: the report (summary, table, curves).
        assert "<progress" in ups[0][3]["text/html"] and "batches" in ups[0][3]["text/plain"]
        final = fit.displays()[0]["data"]
        assert final == ups[-1][3]
        assert final["text/plain"].startswith("fit: 30 epochs"), final["text/plain"][:200]
        assert "<progress" not in final["text/html"] and final["text/html"].count("<img") >= 1
        # The cell's value adds one line, not a second copy of the table.
        value = [o for o in fit.outputs if o["type"] == "execute_result"]
        assert len(value) == 1 and "trn_loss" not in value[0]["data"]["text/html"] and "output above" in value[0]["data"]["text/html"]
    finally:
        k.shutdown()


def test_every_display_of_a_cell_arrives_in_order_while_it_runs():
    k = Kernel()
    try:
        k.run(DEP).ok()
        k.run(PRELUDE).ok()
        k.run('let trn = Pascal::open(fastdet::data::sample_root())?.json("train")?;').ok()
        c = k.run('display(&draw_idx(&trn, 0)?);\ndisplay("second");\n'
                  'std::thread::sleep(std::time::Duration::from_secs(3));\n"end"').ok()
        shown = c.displays()
        assert [list(o["data"]) for o in shown[:2]] == [["image/png"], ["text/plain"]], shown
        assert shown[1]["data"]["text/plain"] == "second"
        arrived = [m[0] for m in c.messages if m[1] == "display_data"]
        assert len(arrived) == 2 and max(arrived) < c.seconds - 2.5, f"displays at {arrived}, cell ended at {c.seconds:.1f} s"
        assert shown[2]["type"] == "execute_result" and "end" in shown[2]["data"]["text/plain"]
    finally:
        k.shutdown()


def test_plain_evcxr_runs_a_notebook_without_the_launcher(tmp_path, monkeypatch):
    """A user with stock evcxr (no launcher, no live channel): notebook 04 runs, each fit's report
    shows when its cell ends, and no display line of fastdet's leaks into the outputs."""
    import nbformat
    from jupyter_client.manager import KernelManager

    import kernel as launcher
    import run_notebooks

    monkeypatch.setenv("FASTDET_QUICK", "1")  # as make lesson and make test run the notebooks
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    evcxr = spec.argv[2]
    assert Path(evcxr).name == "evcxr_jupyter", spec.argv
    slot, lock = launcher.take_slot(Path(spec.env["FASTDET_EVCXR_POOL"]))  # a warm compile folder
    kdir = tmp_path / "kernels" / "plain-evcxr"
    kdir.mkdir(parents=True)
    env = {k: v for k, v in spec.env.items() if k != "FASTDET_EVCXR_POOL"}
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [evcxr, "--control_file", "{connection_file}"], "display_name": "plain evcxr", "language": "rust",
        "env": dict(env, EVCXR_TMPDIR=str(slot))}))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    km = KernelManager(kernel_name="plain-evcxr", kernel_spec_manager=ksm)
    try:
        r = run_notebooks.run_one(NOTEBOOKS / "04_single_object_detection.ipynb", tmp_path / "out", 1200, "[plain]", km=km)
    finally:
        # nbclient leaves a kernel it did not start running: shut it down (a CI run found it, and the
        # child evcxr it spawns, still compiling in the shared slot after the tests had ended).
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        lock.close()
    assert r["error"] is None, r["error"]
    nb = nbformat.read(r["ipynb"], as_version=4)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    everything = json.dumps(outs)
    assert "FASTDET_DISPLAY" not in everything
    reports = [o for o in outs if "fit: " in o.get("data", {}).get("text/html", "")]
    assert reports and all("trn_loss" in o["data"]["text/html"] and "<img" in o["data"]["text/html"] for o in reports)
    assert all(o["output_type"] == "execute_result" for o in reports), "with plain evcxr a report is the cell's value"
    assert r["images"] > 0


# ---------------------------------------------------------------------------------------------
# 4. Training you can stop without losing it

def test_stop_button_keeps_the_learner_and_restart_restores_it(tmp_path):
    models = tmp_path / "models"
    k = Kernel()
    try:
        k.run(DEP).ok()
        k.run(PRELUDE).ok()
        k.run(SETUP).ok()
        k.run(f'let mut learn = Learner::for_task(md.clone(), Task::SingleObject, LearnerOpts::new(None, "{models}").arch(Arch::ResNet18))?;').ok()
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
    .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("weights-"))).ok_or(Error::Invalid("no weights".into()))?;
let saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&f)?.into_iter().collect();
learn.model.vs.variables().iter().all(|(n, t)| saved.get(n).is_some_and(|s| t.equal(s)))""").ok()
        assert same.text.strip() == "true", same.text

        # A fit in the background: watch it, stop it, change the learning rate, continue.
        k.run("let h = learn.fit_background(1e-3, 500, FitOpts::default());").ok()
        k.run("while h.progress().losses.len() < 3 { std::thread::sleep(std::time::Duration::from_millis(50)); }").ok()
        prog = k.run("h").ok()
        assert "fit in the background" in prog.text and prog.images == 1, prog.text
        # A live view of it in one cell, updated while another cell runs.
        attach = k.run("h.show_live();").ok()
        assert len(attach.displays()) == 1 and attach.displays()[0]["id"], attach.outputs
        other = k.run("std::thread::sleep(std::time::Duration::from_secs(5));").ok()
        assert len(other.updates(attach.displays()[0]["id"])) >= 2, other.messages
        k.run("h.stop();\nlet mut learn = h.wait()?;").ok()
        cont = k.run("let before = learn.epochs_done();\nlearn.fit(1e-4, 1, FitOpts::default())?;\nlearn.epochs_done() - before").ok()
        assert cont.text.strip().endswith("1"), cont.text
    finally:
        k.shutdown()
