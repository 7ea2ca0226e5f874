"""Notebook test: every notebook in notebooks/ executes with the Rust (fastdet) kernel without a
cell error and draws pictures. Run by `make test` (after `cargo test`)."""
import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import run_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    out = tmp_path_factory.mktemp("executed")
    results = run_notebooks.main([str(ROOT / "notebooks"), "--out", str(out)])
    return {r["name"]: r for r in results}, out


def outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == kind]


def text_of(nb):
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            parts.append(o.get("text", ""))
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_draws(executed, path):
    results, out = executed
    r = results[path.name]
    assert r["error"] is None, r["error"]
    nb = nbformat.read(out / path.name, as_version=4)
    assert not outputs(nb, "error")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell did not run"
    assert r["images"] > 0, "no picture was drawn"
    assert (out / path.with_suffix(".html").name).stat().st_size > 10_000


def test_pascal_notebook_content(executed):
    results, out = executed
    nb = nbformat.read(out / "01_pascal.ipynb", as_version=4)
    text = text_of(nb)
    # The bundled sample: 52 train images with 226 objects, 13 val images with 86.
    assert "train: 52 images, 226 objects; val: 13 images, 86 objects" in text
    assert "device: cpu" in text or "device: cuda" in text
    assert results["01_pascal.ipynb"]["images"] >= 4  # show_img, two draw_idx, the 3x3 grid
    assert "true" in text  # XML and JSON agree
