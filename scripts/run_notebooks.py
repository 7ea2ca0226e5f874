"""Execute notebooks headless with the "Rust (fastdet)" kernel and write the executed notebooks
(.ipynb and .html, pictures embedded) to an output folder.

    python scripts/run_notebooks.py notebooks/ --out out/

Notebooks run one at a time (2 cores are busy enough with one kernel; each kernel takes its own
compile folder from the launcher's pool, scripts/kernel.py), each in its own folder so `:dep fastdet = { path = ".." }` finds the crate. A notebook that fails is still
written, with the error in the failing cell, so nothing is lost; the exit status is then 1.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

KERNEL = "fastdet-rust"


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
    from datetime import datetime

    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def run_one(path, out_dir, timeout):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    started = time.time()
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
    code = [c for c in nb.cells if c.cell_type == "code"]
    return {
        "name": path.name,
        "seconds": seconds,
        "first_cell_seconds": cell_seconds(code[0]) if code else None,
        "images": image_outputs(nb),
        "error": error,
        "ipynb": ipynb,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="notebooks, or folders of notebooks")
    ap.add_argument("--out", type=Path, default=Path("out"))
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    os.environ.setdefault("FASTDET_QUICK", "1")

    notebooks = []
    for p in args.paths:
        notebooks += sorted(p.glob("*.ipynb")) if p.is_dir() else [p]
    if not notebooks:
        sys.exit(f"no notebooks found in {', '.join(map(str, args.paths))}")

    results = []
    for nb in notebooks:
        print(f"running {nb} ...", flush=True)
        r = run_one(nb, args.out, args.timeout)
        results.append(r)
        first = f"{r['first_cell_seconds']:.0f} s" if r["first_cell_seconds"] is not None else "-"
        status = "ok" if r["error"] is None else "FAILED"
        print(f"  {status}: {r['seconds']:.0f} s (first cell {first}), {r['images']} pictures -> {r['ipynb']}", flush=True)
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
