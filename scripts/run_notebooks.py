"""Execute notebooks headless with the "Rust (fastdet)" kernel and write the executed notebooks
(.ipynb and .html, pictures embedded) to an output folder.

    python scripts/run_notebooks.py notebooks/ --out out/ [--force]

Notebooks run one at a time (2 cores are busy enough with one kernel; each kernel takes its own
compile folder from the launcher's pool, scripts/kernel.py), each in its own folder so
`:dep fastdet = { path = ".." }` finds the crate. The run prints its plan first (every notebook
with the time it took last time here, or a typical time on a 2-core machine), then each cell as
it starts, so a long cell (a fit) says what it is.

An executed notebook is up to date when its sources did not change since it ran without an error:
the notebook, `src/`, `assets/`, `Cargo.toml`, `Cargo.lock`, the data folder's listing, the
kernel's torch and evcxr and the settings (`FASTDET_QUICK`, `FASTDET_DATA`) all go into a stamp
kept beside it (`out/.stamps.json`). Up-to-date notebooks are not run again (`make lesson` after
`make test`, or the other way round, runs only what changed); `--force` runs them all.

A notebook that fails is still written, with the error in the failing cell, so nothing is lost;
the exit status is then 1.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

KERNEL = "fastdet-rust"
ROOT = Path(__file__).resolve().parent.parent
STAMPS = ".stamps.json"
# Seconds each notebook took in `make lesson` on a 2-core x86-64 machine with a warm kernel
# (quick mode): the plan's estimate until this machine has run it once.
TYPICAL = {
    "01_pascal.ipynb": 25,
    "02_bbox_augmentation.ipynb": 20,
    "03_largest_object.ipynb": 90,
    "04_single_object_detection.ipynb": 45,
    "05_multilabel.ipynb": 40,
    "06_ssd.ipynb": 100,
}


def image_outputs(nb):
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )


def cell_seconds(cell):
    """Seconds a cell took, from the timings nbclient records (None if it did not run)."""
    t = cell.get("metadata", {}).get("execution", {})
    start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def _hash_tree(h, folder: Path):
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(p.read_bytes())


def _data_listing(h, folder: Path):
    """Names and sizes (not contents: the full VOC is 900 MB) of the data folder's files."""
    if not folder.is_dir():
        h.update(b"no data folder")
        return
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(folder)} {p.stat().st_size}\n".encode())


def _kernel_versions():
    try:
        import torch

        torch_v = torch.__version__
    except ImportError:
        torch_v = "no torch"
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        return f"torch {torch_v}; kernel {' '.join(spec.argv[:3])}"
    except Exception as e:  # no kernelspec: the run will fail and say so
        return f"torch {torch_v}; no kernel ({e})"


def sources_stamp():
    """A hash of everything an executed notebook depends on except the notebook itself."""
    h = hashlib.sha256()
    for f in ("Cargo.toml", "Cargo.lock"):
        h.update((ROOT / f).read_bytes())
    for d in ("src", "assets"):
        _hash_tree(h, ROOT / d)
    data = os.environ.get("FASTDET_DATA", "")
    h.update(f"FASTDET_DATA={data} FASTDET_QUICK={os.environ.get('FASTDET_QUICK', '')}\n".encode())
    _data_listing(h, Path(data) if data else ROOT / "data")
    h.update(_kernel_versions().encode())
    return h.hexdigest()


def notebook_stamp(path: Path, sources: str):
    return hashlib.sha256(sources.encode() + path.read_bytes()).hexdigest()


def _fmt(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def run_one(path, out_dir, timeout, tag, km=None):
    """Execute one notebook into out_dir (.ipynb and .html); `km`: a kernel manager of another
    kernel than "Rust (fastdet)" (the fallback test runs plain evcxr)."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    started = time.time()

    def on_cell_execute(cell, cell_index, **_):
        k = next((i for i, c in enumerate(code) if c is cell), -1) + 1
        first = next((l.strip() for l in cell.source.splitlines() if l.strip() and not l.strip().startswith("//")), "")
        first = first if len(first) <= 70 else first[:67] + "..."
        print(f"  {tag} cell {k}/{len(code)} at {_fmt(time.time() - started)}: {first}", flush=True)

    client = NotebookClient(
        nb,
        km=km,
        kernel_name=KERNEL if km is None else km.kernel_name,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent.resolve())}},
        on_cell_execute=on_cell_execute,
    )
    error = None
    try:
        client.execute()
    except Exception as e:  # a cell error, a timeout or a dead kernel: keep what ran
        error = f"{type(e).__name__}: {e}"
    seconds = time.time() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    ipynb = out_dir / path.name
    nbformat.write(nb, ipynb)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
    return {
        "name": path.name,
        "seconds": seconds,
        "first_cell_seconds": cell_seconds(code[0]) if code else None,
        "images": image_outputs(nb),
        "error": error,
        "ipynb": ipynb,
        "skipped": False,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="notebooks, or folders of notebooks")
    ap.add_argument("--out", type=Path, default=Path("out"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("--force", action="store_true", help="run notebooks that are up to date too")
    args = ap.parse_args(argv)
    os.environ.setdefault("FASTDET_QUICK", "1")

    notebooks = []
    for p in args.paths:
        notebooks += sorted(p.glob("*.ipynb")) if p.is_dir() else [p]
    if not notebooks:
        sys.exit(f"no notebooks found in {', '.join(map(str, args.paths))}")

    stamps_file = args.out / STAMPS
    try:
        stamps = json.loads(stamps_file.read_text())
    except (OSError, ValueError):
        stamps = {}
    sources = sources_stamp()
    todo = []
    for nb in notebooks:
        s = stamps.get(nb.name, {})
        current = (
            s.get("stamp") == notebook_stamp(nb, sources)
            and s.get("ok")
            and (args.out / nb.name).is_file()
            and (args.out / nb.with_suffix(".html").name).is_file()
        )
        todo.append(args.force or not current)

    # The plan: what runs, in which order, and about how long.
    est = [stamps.get(nb.name, {}).get("seconds") or TYPICAL.get(nb.name, 60) for nb in notebooks]
    total = sum(e for e, run in zip(est, todo) if run)
    print(f"{sum(todo)} of {len(notebooks)} notebooks to run, about {_fmt(total)} in all:", flush=True)
    for nb, e, run in zip(notebooks, est, todo):
        what = f"~{_fmt(e)}" if run else "up to date, not run again (--force runs it)"
        print(f"  {nb.name:<36} {what}", flush=True)

    results, t0, left = [], time.time(), total
    runs = [nb for nb, run in zip(notebooks, todo) if run]
    for nb, e, run in zip(notebooks, est, todo):
        if not run:
            s = stamps[nb.name]
            results.append({"name": nb.name, "seconds": 0.0, "first_cell_seconds": None, "images": s.get("images", 0),
                            "error": None, "ipynb": args.out / nb.name, "skipped": True})
            continue
        k = runs.index(nb) + 1
        after = [r.name for r in runs[k:]]
        print(f"[{k}/{len(runs)}] {nb.name}: running, ~{_fmt(e)}; {_fmt(left)} of notebooks left"
              + (f" (then {', '.join(after)})" if after else ""), flush=True)
        r = run_one(nb, args.out, args.timeout, f"[{k}/{len(runs)}]")
        left = max(0, left - e)
        results.append(r)
        stamps[nb.name] = {
            "stamp": notebook_stamp(nb, sources),
            "ok": r["error"] is None,
            "seconds": round(r["seconds"], 1),
            "images": r["images"],
        }
        args.out.mkdir(parents=True, exist_ok=True)
        stamps_file.write_text(json.dumps(stamps, indent=1))
        first = f"{r['first_cell_seconds']:.0f} s" if r["first_cell_seconds"] is not None else "-"
        status = "ok" if r["error"] is None else "FAILED"
        print(f"  {status}: {_fmt(r['seconds'])} (first cell {first}), {r['images']} pictures -> {r['ipynb']}"
              f" ({_fmt(time.time() - t0)} since the start)", flush=True)
        if r["error"]:
            print("  " + r["error"].strip().replace("\n", "\n  ")[-3000:], flush=True)

    out = args.out.resolve()
    print(f"\nexecuted notebooks (.ipynb and .html) are in {out}")
    failed = [r["name"] for r in results if r["error"]]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return results


if __name__ == "__main__":
    results = main()
    sys.exit(1 if any(r["error"] for r in results) else 0)
