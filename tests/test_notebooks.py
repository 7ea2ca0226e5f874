"""Notebook test: every notebook in notebooks/ executes with the Rust (fastdet) kernel without a
cell error and draws pictures. Run by `make test` (after `cargo test`); it shares the executed
notebooks in out/ with `make lesson` (scripts/run_notebooks.py runs only those whose sources
changed)."""
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
def executed():
    """The notebooks executed into out/, as `make lesson` writes them: those already executed
    from the same sources (run_notebooks' stamps) are not run again."""
    out = ROOT / "out"
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
    # The sample's statistics at 224 (tests/it/report.rs checks the same numbers against the CLI).
    assert "images: 52, objects: 226 (0 difficult), 0 images without objects" in text
    assert "tiny boxes (under 4 px at 224): 12" in text
    assert (out / "data_report.html").stat().st_size > 100_000


def cell_texts(nb, needle):
    """The text of the code cells whose source contains `needle`: printed lines and the text of
    their displays (a fit's live output, final state, holds its epoch table)."""
    out = []
    for c in nb.cells:
        if c.cell_type == "code" and needle in c.source:
            out.append("".join(o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", "")
                               for o in c.get("outputs", []) if o.get("output_type") in ("stream", "display_data")))
    return out


def cell_outputs(nb, needle):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    return cell.get("outputs", [])


def test_cells_that_draw_several_pictures_show_them_all(executed):
    _, out = executed
    nb = nbformat.read(out / "02_bbox_augmentation.ipynb", as_version=4)
    for needle in ["display(&show_augmented(&big, 6)?);", "display(&show_batch(&a, &md.classes, 12)?);"]:
        pngs = [o for o in cell_outputs(nb, needle) if "image/png" in o.get("data", {})]
        assert len(pngs) == 2, needle
    nb = nbformat.read(out / "06_ssd.ipynb", as_version=4)
    walk = cell_outputs(nb, "anchor_prediction_steps(")
    kinds = ["png" if "image/png" in o.get("data", {}) else o.get("text", "").strip()[:20] for o in walk]
    assert kinds == ["the ground truth of ", "png", "the 16 anchors, each", "png", "the boxes the activa", "png"], kinds


def test_ssd_notebook_measures_how_the_anchors_fit(executed):
    """Notebook 06's coverage table (the lesson's 4x4 and 189 anchors beside fitted ones) and the
    picture of the objects the 189 anchors leave uncovered."""
    _, out = executed
    nb = nbformat.read(out / "06_ssd.ipynb", as_version=4)
    (table,) = [o for o in cell_outputs(nb, '("189 fitted".into()') if "text/html" in o.get("data", {})]
    for name in ["lesson 4x4", "4x4 fitted", "lesson 189", "189 fitted"]:
        assert f"<td>{name}</td>" in table["data"]["text/html"], name
    assert any("image/png" in o.get("data", {}) for o in cell_outputs(nb, "fit189.before.plot_uncovered("))


def test_no_cell_shows_a_bare_unit(executed):
    """A cell ending in a `for` loop without `;` shows `Out[n]: ()` under evcxr: noise for a reader."""
    _, out = executed
    for path in sorted(out.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for c in nb.cells:
            for o in c.get("outputs", []):
                assert o.get("data", {}).get("text/plain", "").strip() != "()", (path.name, c.source[-80:])


def test_a_fit_shows_one_output_in_its_final_state(executed):
    """make lesson runs the notebooks through the launcher: each fit's live output is kept in the
    executed notebook as it ended, the report (summary, table, curves), with no progress bar."""
    _, out = executed
    nb = nbformat.read(out / "04_single_object_detection.ipynb", as_version=4)
    fits = [c for c in nb.cells if c.cell_type == "code" and "learn.fit(" in c.source]
    assert fits
    for c in fits:
        shown = [o for o in c.outputs if o.get("output_type") == "display_data"]
        assert len(shown) == 1, [o.get("output_type") for o in c.outputs]
        html = shown[0]["data"]["text/html"]
        assert "fit: " in html and "trn_loss" in html and "<img" in html and "<progress" not in html


def test_augmentation_notebook_shows_the_bug_and_the_fix(executed):
    _, out = executed
    nb = nbformat.read(out / "02_bbox_augmentation.ipynb", as_version=4)
    (none,) = cell_texts(nb, "TfmY::None)?;")
    (coord,) = cell_texts(nb, "let (tfms, _) = tfms_from_model(sz, augs.clone(), CropType::No, TfmY::Coord)?;")
    none_boxes = [l for l in none.splitlines() if l.startswith("[")]
    coord_boxes = [l for l in coord.splitlines() if l.startswith("[")]
    assert len(none_boxes) == 9 and len(set(none_boxes)) == 1, none_boxes  # TfmY::None: the box never moves
    assert len(coord_boxes) == 9 and len(set(coord_boxes)) == 9, coord_boxes  # TfmY::Coord: it follows (seeded)


def test_ssd_notebook_numbers(executed):
    import re

    _, out = executed
    nb = nbformat.read(out / "06_ssd.ipynb", as_version=4)
    text = text_of(nb)
    assert text.index("16 anchors") < text.index("189 anchors")
    lost = re.findall(r"(4x4|189) anchors: the lesson's matching loses (\d+) of (\d+) objects; NoGtLost loses (\d+)", text)
    assert [l[0] for l in lost] == ["4x4", "189"], text
    for _, l, total, fixed in lost:
        assert 0 <= int(fixed) <= int(l) <= int(total) and int(total) > 0
    assert int(lost[0][1]) > 0, "on the 4x4 grid the lesson's rule loses objects of the sample"
    m = re.search(r"VOC07 mAP ([\d.]+), COCO AP@\[\.5:\.95\] ([\d.]+)", text)
    assert m and 0 <= float(m.group(1)) <= 1 and 0 <= float(m.group(2)) <= 1
    # The lesson's ssd_loss(batch, y, print_it=True) before the 4x4, the 189 and the focal fits.
    printed = re.findall(r"^loc: ([\d.]+), clas: ([\d.]+)$", text, re.M)
    assert len(printed) == 3 and all(float(l) >= 0 and float(c) > 0 for l, c in printed), printed
    # The testing walk-through: the matching as the lesson prints it, and the target classes with bg.
    (trace,) = cell_texts(nb, "trace_image(&learn, &batch, idx, 0.5)")
    best = re.search(r"overlaps.max\(1\): objects' best anchors \[([\d, ]+)\]", trace)
    assert best and all(0 <= int(a) < 16 for a in best.group(1).split(", ")), trace
    pos = re.search(r"positive anchors \[([\d, ]*)\]", trace)
    assert pos and pos.group(1), "every object keeps at least its forced anchor"
    assert re.search(r"loc_loss [\d.]+, clas_loss [\d.]+ \(cross-entropy [\d.]+\)", trace), trace
    names = "".join(o.get("data", {}).get("text/plain", "") for c in nb.cells if c.cell_type == "code" and "tr.class_names" in c.source for o in c.outputs)
    assert names.count('"bg"') == 16 - len(pos.group(1).split(", ")), names
    b = re.search(r"boxes over the 0.25 threshold: (\d+) before NMS, (\d+) after", text)
    before, after = int(b.group(1)), int(b.group(2))
    # NMS never adds boxes; with many boxes over the threshold it must remove some (a quick-mode
    # model may leave only a few, none overlapping: then there is nothing to remove).
    assert after <= before and (before < 20 or after < before), (before, after)


def last_epoch_row(nb, needle):
    """The numbers of the last epoch row printed by the code cell whose source contains `needle`."""
    (text,) = cell_texts(nb, needle)
    rows = [l.split() for l in text.replace("\r", "\n").splitlines()]
    rows = [r for r in rows if len(r) >= 4 and r[0].isdigit() and all(c.replace(".", "", 1).isdigit() for c in r[1:-1])]
    assert rows, text
    return [float(v) for v in rows[-1][1:-1]]


def test_the_synthetic_box_regressor_learns_on_the_cpu(executed):
    """Notebook 03 also trains head_reg4 on synthetic shapes for about a CPU minute and a half: it
    learns (validation L1 of a few pixels on 96 px images), so its top losses are real mistakes."""
    _, out = executed
    nb = nbformat.read(out / "03_largest_object.ipynb", as_version=4)
    trn, val = last_epoch_row(nb, "Task::Regression, LearnerOpts::new(None")
    assert val < 12.0, f"validation L1 {val} px"


@pytest.mark.parametrize("name,task,minimum", [
    ("03_largest_object.ipynb", "Task::Classifier, LearnerOpts::new(body", 0.8),  # accuracy
    ("04_single_object_detection.ipynb", "Task::SingleObject, LearnerOpts::new(body", 0.75),  # detn_acc
    ("05_multilabel.ipynb", "Task::Multilabel, LearnerOpts::new(body", 0.8),  # accuracy_thresh
])
def test_shape_models_learn_from_the_synthetic_ssds_body(executed, name, task, minimum):
    """Notebooks 03-05 train their model on synthetic shapes from the synthetic SSD's ResNet18 body
    (make test trains it once per machine): under a CPU minute is enough to learn."""
    _, out = executed
    nb = nbformat.read(out / name, as_version=4)
    row = last_epoch_row(nb, task)
    assert row[2] >= minimum, f"{name}: last epoch {row}"


def test_ssd_notebook_writes_its_reports(executed):
    _, out = executed
    page = ROOT / "out" / "report_ssd_sample.html"
    html = page.read_text()
    for section in ["map", "per-class", "pr-curves", "confusion", "worst", "sample"]:
        assert f'<section id="{section}">' in html, section
    assert html.count("data:image/png;base64,") >= 3


def test_own_data_notebook(executed):
    """Notebook 07 (issue 22): a COCO and a YOLO export found as such, the coverage of the
    lesson's and fitted anchors, a fit with mAP in its table and its best epoch kept, and the
    detections written with the COCO export's own category ids scoring what the epoch table
    said (a wrong id mapping would score them as other classes)."""
    _, out = executed
    nb = nbformat.read(out / "07_own_data.ipynb", as_version=4)
    text = text_of(nb)
    assert "../out/own_data/coco: COCO JSON" in text and "../out/own_data/yolo: YOLO" in text
    assert 'COCO categories: ["coin", "tile", "sign"] with ids [101, 205, 309]' in text
    (table,) = [o for o in cell_outputs(nb, "CoverageTable {") if "text/html" in o.get("data", {})]
    for name in ["lesson 189", "fitted"]:
        assert f"<td>{name}</td>" in table["data"]["text/html"], name
    (fit,) = cell_texts(nb, "keep_best(\"map\")")
    rows = [line.split() for line in fit.splitlines() if line.strip()[:1].isdigit()]
    assert "map" in fit and len(rows) == 6, fit
    maps = [float(r[3]) for r in rows]
    best = max(range(len(maps)), key=lambda i: maps[i])
    assert f"best epoch {best} by map (higher is better): {maps[best]:.6f}" in fit, fit
    assert list((out / "models/own_data/best").glob("weights-*.safetensors"))
    (scored,) = [o for o in cell_outputs(nb, "detections_on(") if "text/html" in o.get("data", {})]
    assert f"<b>mAP (voc07)</b> = {maps[best]:.4f}" in scored["data"]["text/html"], (maps, scored["data"]["text/html"][:200])


def test_training_notebooks_run_on_a_dataset_smaller_than_the_sample(tmp_path, monkeypatch):
    """Quick mode on 20 images of the sample (16 train: 2 batches of 8, where the sample has 6):
    each triangular cycle is lengthened to cover its cut (FitOpts::covering_cut) instead of
    being refused, so notebooks 04, 05 and 06 run to the end on a user's small dataset."""
    src = ROOT / "data" / "coco128-voc"
    d = json.loads((src / "pascal_train2007.json").read_text())
    images = d["images"][:20]
    ids = {i["id"] for i in images}
    small = dict(d, images=images, annotations=[a for a in d["annotations"] if a["image_id"] in ids])
    root = tmp_path / "small"
    jpegs = root / "VOCdevkit" / "VOC2007" / "JPEGImages"
    jpegs.mkdir(parents=True)
    for i in images:
        (jpegs / i["file_name"]).symlink_to(src / "VOCdevkit" / "VOC2007" / "JPEGImages" / i["file_name"])
    (root / "pascal_train2007.json").write_text(json.dumps(small))
    monkeypatch.setenv("FASTDET_DATA", str(root))
    monkeypatch.setenv("FASTDET_QUICK", "1")
    for name in ["04_single_object_detection.ipynb", "05_multilabel.ipynb", "06_ssd.ipynb"]:
        r = run_notebooks.run_one(ROOT / "notebooks" / name, tmp_path / "out", 1200, "[20 images]")
        assert r["error"] is None, f"{name}: {r['error']}"
        nb = nbformat.read(tmp_path / "out" / name, as_version=4)
        # The data in use was the small set: 16 training images, 2 batches (the sample makes 6).
        if name.startswith("04"):
            assert "2 training batches, 1 validation batches" in text_of(nb), text_of(nb)[:2000]
        fits = [o for o in outputs(nb, "display_data") if "fit: " in o.get("data", {}).get("text/html", "")]
        assert fits, f"{name}: no fit report"
