"""`make bench-kernel`: how long a user waits in the notebook kernel, printed as a table beside
the goals (never asserted; the kernel's behaviour is tested by tests/test_kernel.py).

- a warm kernel (make setup compiled it): the notebooks' real first cells, `:dep` and the first
  cell that uses the crate (notebook 01's), and two lesson cells that draw;
- after a one-line change in a module of src/ (in a copy of the crate, compiled once before):
  the next two cells, for the central modules and the cheapest one;
- two kernels started at once (the second takes its own compile folder, seeded from the first);
- compiling the kernel from nothing (an empty pool, as on a new machine), unless --no-cold.

    python benches/kernel.py [--no-cold] [--modules boxes.rs,util.rs]
"""
import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from kernel_session import KERNEL, NOTEBOOKS, Kernel  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

# Changed one at a time, a line appended to each (a doc comment and a function).
MODULES = ["boxes.rs", "learner/mod.rs", "data/mod.rs", "util.rs"]
ROWS = []  # (what, seconds, goal or None)


def first_cells(name, n):
    nb = json.loads((NOTEBOOKS / name).read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"][:n]


def row(what, seconds, goal=None):
    ROWS.append((what, seconds, goal))
    print(f"  {what}: {seconds:.1f} s", flush=True)


def warm():
    dep, first, third = first_cells("01_pascal.ipynb", 3)
    # A warm kernel is one compiled for the current sources (make setup's, after a change the
    # first kernel's): compile what changed since, unmeasured, then time a new kernel.
    k = Kernel()
    k.run(dep, timeout=1800).ok()
    k.shutdown()
    k = Kernel()
    try:
        a = k.run(dep).ok().seconds
        b = k.run(first).ok().seconds
        row("warm kernel: the :dep cell", a)
        row("warm kernel: the first cell that uses the crate (01_pascal)", b)
        row("warm kernel: both together", a + b, 10)
        k.run(third).ok()
        c = k.run("draw_idx(&trn, 0)?").ok()
        assert c.images == 1
        row("a lesson cell without training (draw_idx)", c.seconds, 2)
        k.run("let md = ImageData::from_dataset(trn.clone(), TargetKind::AllBoxes, tfms_from_model(224, "
              "lesson_augmentations(), CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;").ok()
        c = k.run("show_batch(&md.trn_dl.one_batch()?, &md.classes, 4)?").ok()
        assert c.images == 1
        row("a lesson cell without training (show_batch)", c.seconds, 2)
    finally:
        k.shutdown()


def after_change(modules):
    """A copy of the crate (the working tree is left alone), compiled once, then each module
    changed by one line and the next two cells timed."""
    dep, first = first_cells("01_pascal.ipynb", 2)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastdet-kernel-bench-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for d in ("src", "assets", "data", "notebooks"):
            shutil.copytree(ROOT / d, tmp / d, symlinks=True)
        for f in ("Cargo.toml", "Cargo.lock"):
            shutil.copy2(ROOT / f, tmp / f)
        k = Kernel(cwd=tmp / "notebooks")
        t = k.run(dep).ok().seconds + k.run(first).ok().seconds
        k.shutdown()
        row("a new copy of the crate: the first two cells", t)
        for n, m in enumerate(modules):
            with open(tmp / "src" / m, "a") as f:
                f.write(f"\n/// A line added by the kernel bench.\npub fn kernel_bench_stamp_{n}() -> u64 {{ {n} }}\n")
            k = Kernel(cwd=tmp / "notebooks")
            a = k.run(dep).ok().seconds
            b = k.run(first).ok().seconds
            k.shutdown()
            row(f"after a one-line change in src/{m}: the next two cells ({a:.0f} s + {b:.0f} s)", a + b, 30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def two_kernels():
    firsts = {}

    def session(name):
        k = Kernel()
        try:
            firsts[name] = sum(k.run(c).ok().seconds for c in first_cells(name, 2))
        finally:
            k.shutdown()

    names = ("04_single_object_detection.ipynb", "06_ssd.ipynb")
    threads = [threading.Thread(target=session, args=(n,)) for n in names]
    for t in threads:
        t.start()
        time.sleep(0.5)
    for t in threads:
        t.join()
    a, b = sorted(firsts.values())
    row("two kernels at once: the first's first two cells", a)
    row("two kernels at once: the second's first two cells", b)


def cold():
    """An empty pool: what make setup does once on a new machine."""
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    kdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastdet-cold-{os.getpid()}"
    shutil.rmtree(kdir, ignore_errors=True)
    try:
        (kdir / "kernels" / "fastdet-cold").mkdir(parents=True)
        pool = kdir / "pool"
        real_pool = Path(spec.env["FASTDET_EVCXR_POOL"])
        if (real_pool / ".cargo").is_dir():  # the pool's cargo settings (scripts/kernel-cargo.toml)
            shutil.copytree(real_pool / ".cargo", pool / ".cargo")
        env = dict(spec.env, FASTDET_EVCXR_POOL=str(pool))
        (kdir / "kernels" / "fastdet-cold" / "kernel.json").write_text(json.dumps(
            {"argv": spec.argv, "display_name": "cold", "language": "rust", "interrupt_mode": "signal", "env": env}))
        ksm = KernelSpecManager(kernel_dirs=[str(kdir / "kernels")])
        dep, first = first_cells("01_pascal.ipynb", 2)
        k = Kernel(kernel_name="fastdet-cold", ksm=ksm)
        t = k.run(dep, timeout=1800).ok().seconds + k.run(first).ok().seconds
        k.shutdown()
        row("compiling the kernel from nothing (make setup does it once)", t)
    finally:
        shutil.rmtree(kdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-cold", action="store_true", help="skip compiling a kernel from nothing (~5 minutes)")
    ap.add_argument("--modules", default=",".join(MODULES), help="modules of src/ to change, comma-separated")
    ap.add_argument("--only", default="", help="warm,change,two,cold (default: all)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    cpu = os.cpu_count()
    print(f"kernel bench on {cpu} cores ({os.uname().machine}), kernel {KERNEL}", flush=True)
    if not only or "warm" in only:
        warm()
    if not only or "change" in only:
        after_change([m for m in args.modules.split(",") if m])
    if not only or "two" in only:
        two_kernels()
    if (not only or "cold" in only) and not args.no_cold:
        cold()

    print(f"\n{'what':<78} {'seconds':>8} {'goal':>8}  met?")
    met, missed = [], []
    for what, s, goal in ROWS:
        ok = "-" if goal is None else ("yes" if s <= goal else "NO")
        if goal is not None:
            (met if s <= goal else missed).append(what)
        print(f"{what:<78} {s:>8.1f} {('<= %d' % goal) if goal else '-':>8}  {ok}")
    print(f"\nverdict: {len(met)} of {len(met) + len(missed)} goals met"
          + (f"; not met: {'; '.join(missed)}" if missed else ""))


if __name__ == "__main__":
    main()
