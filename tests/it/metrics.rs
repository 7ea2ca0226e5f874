//! mAP against pycocotools and a port of voc_eval.py (tests/golden/gen_map.py writes
//! tests/golden/map.json), the COCO results reader, and the edge cases.

use crate::common;
use fastdet::boxes::BBox;
use fastdet::data::{sample_root, Dataset, ImageRecord, Pascal};
use fastdet::metrics::{evaluate, load_coco_results, save_coco_results, voc_ap, ApMetric, Detection};
use serde_json::Value;

fn golden() -> Value {
    common::golden("map.json")
}

/// The sample's train + val ground truth with gen_map.py's changes: an empty image and the
/// listed objects marked difficult.
fn ground_truth(g: &Value) -> Dataset {
    let pascal = Pascal::open(sample_root()).unwrap();
    let mut ds = pascal.json("train").unwrap();
    ds.images.extend(pascal.json("val").unwrap().images);
    ds.images.push(ImageRecord {
        id: g["empty_image_id"].as_u64().unwrap(),
        file_name: "empty.jpg".into(),
        width: 640,
        height: 480,
        objects: vec![],
    });
    for d in g["difficult"].as_array().unwrap() {
        let (id, k) = (d[0].as_u64().unwrap(), d[1].as_u64().unwrap() as usize);
        let i = ds.index_of(id).unwrap();
        ds.images[i].objects[k].difficult = true;
    }
    ds
}

fn detections(g: &Value) -> Vec<Detection> {
    g["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<f32> = d["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            Detection {
                image_id: d["image_id"].as_u64().unwrap(),
                class: d["category_id"].as_u64().unwrap() as usize - 1,
                bbox: BBox::from_xywh([b[0], b[1], b[2], b[3]]),
                score: d["score"].as_f64().unwrap() as f32,
            }
        })
        .collect()
}

fn close(got: Option<f64>, want: &Value, what: &str) {
    match (got, want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-6, "{what}: {g} vs {w}"),
        (None, None) => {}
        (g, w) => panic!("{what}: {g:?} vs {w:?}"),
    }
}

#[test]
fn map_equals_voc_eval_and_pycocotools() {
    let g = golden();
    let ds = ground_truth(&g);
    let dets = detections(&g);
    for (metric, key) in [(ApMetric::Voc07, "voc07"), (ApMetric::Voc, "voc"), (ApMetric::Coco, "coco")] {
        let t = evaluate(&ds, &dets, metric).unwrap();
        let want = &g[key];
        close(Some(t.map), &want["map"], &format!("{key} mAP"));
        for c in &t.classes {
            close(c.ap, &want["ap"][c.class], &format!("{key} AP of {}", c.name));
            if metric == ApMetric::Coco {
                close(c.ap50, &want["ap50"][c.class], &format!("AP50 of {}", c.name));
                close(c.ap75, &want["ap75"][c.class], &format!("AP75 of {}", c.name));
            }
        }
        if metric == ApMetric::Coco {
            close(t.map50, &want["map50"], "AP50");
            close(t.map75, &want["map75"], "AP75");
        }
        // Display, HTML and the PR figure work on real results.
        assert!(t.to_string().contains(&format!("mAP ({key})")));
        assert!(t.to_html().contains("<table>"));
        t.pr_figure(6).unwrap().to_png().unwrap();
    }
}

#[test]
fn coco_results_round_trip_and_errors_name_the_entry() {
    let g = golden();
    let ds = ground_truth(&g);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dets.json");
    std::fs::write(&p, serde_json::to_string(&g["detections"]).unwrap()).unwrap();
    let dets = load_coco_results(&p, &ds).unwrap();
    assert_eq!(dets, detections(&g));
    let p2 = dir.path().join("again.json");
    save_coco_results(&p2, &dets, &ds).unwrap();
    assert_eq!(load_coco_results(&p2, &ds).unwrap(), dets);

    std::fs::write(
        &p,
        r#"[{"image_id": 71, "category_id": 3, "bbox": [1,2,3,4], "score": 0.5},
                           {"image_id": 12345, "category_id": 3, "bbox": [1,2,3,4], "score": 0.5}]"#,
    )
    .unwrap();
    let e = load_coco_results(&p, &ds).unwrap_err().to_string();
    assert!(e.contains("dets.json") && e.contains("entry 1") && e.contains("12345"), "{e}");
    std::fs::write(&p, r#"[{"image_id": 71, "category_id": 21, "bbox": [1,2,3,4], "score": 0.5}]"#).unwrap();
    let e = load_coco_results(&p, &ds).unwrap_err().to_string();
    assert!(e.contains("dets.json") && e.contains("entry 0") && e.contains("category_id 21"), "{e}");
    std::fs::write(&p, r#"[{"image_id": 71, "category_id": 0, "bbox": [1,2,3,4], "score": 0.5}]"#).unwrap();
    assert!(load_coco_results(&p, &ds).is_err());
    // A box of negative width is rejected, not scored (issue 22).
    std::fs::write(
        &p,
        r#"[{"image_id": 71, "category_id": 3, "bbox": [1,2,3,4], "score": 0.5},
            {"image_id": 71, "category_id": 3, "bbox": [10,2,-3,4], "score": 0.5}]"#,
    )
    .unwrap();
    let e = load_coco_results(&p, &ds).unwrap_err().to_string();
    assert!(e.contains("dets.json") && e.contains("entry 1") && e.contains("negative width -3"), "{e}");
    std::fs::write(&p, r#"[{"image_id": 71, "category_id": 3, "bbox": [1,2,3,-0.5], "score": 0.5}]"#).unwrap();
    let e = load_coco_results(&p, &ds).unwrap_err().to_string();
    assert!(e.contains("entry 0") && e.contains("negative height -0.5"), "{e}");
    std::fs::write(&p, r#"[{"image_id": 71}]"#).unwrap();
    assert!(load_coco_results(&p, &ds).unwrap_err().to_string().contains("dets.json"));
    // The library checks too.
    let bad = [Detection { image_id: 1, class: 0, bbox: BBox::new(0., 0., 5., 5.), score: 1.0 }];
    assert!(evaluate(&ds, &bad, ApMetric::Coco).unwrap_err().to_string().contains("image_id 1"));
    let bad = [Detection { image_id: 71, class: 20, bbox: BBox::new(0., 0., 5., 5.), score: 1.0 }];
    assert!(evaluate(&ds, &bad, ApMetric::Voc).is_err());
    let ok = Detection { image_id: 71, class: 2, bbox: BBox::new(0., 0., 5., 5.), score: 1.0 };
    let flipped = Detection { bbox: BBox::from_xywh([10.0, 2.0, -3.0, 4.0]), ..ok };
    let e = evaluate(&ds, &[ok, flipped], ApMetric::Voc07).unwrap_err().to_string();
    assert!(e.contains("detection 1") && e.contains("negative width"), "{e}");
}

fn tiny() -> Dataset {
    use fastdet::data::Object;
    let obj = |t, l, b, r, class, difficult| Object { bbox: BBox::new(t, l, b, r), class, difficult };
    Dataset {
        source: "tiny.json".into(),
        image_dir: ".".into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        category_ids: vec![],
        images: vec![
            ImageRecord {
                id: 1,
                file_name: "1.jpg".into(),
                width: 100,
                height: 100,
                objects: vec![obj(0., 0., 99., 49., 0, false), obj(10., 60., 30., 80., 0, true)],
            },
            ImageRecord { id: 2, file_name: "2.jpg".into(), width: 100, height: 100, objects: vec![] },
            ImageRecord {
                id: 3,
                file_name: "3.jpg".into(),
                width: 100,
                height: 100,
                objects: vec![obj(0., 0., 9., 9., 2, true)],
            },
        ],
        warnings: vec![],
    }
}

#[test]
fn edge_cases_give_numbers_not_nan() {
    let ds = tiny();
    let d = |image_id, class, bbox: BBox, score| Detection { image_id, class, bbox, score };
    for metric in [ApMetric::Voc07, ApMetric::Voc, ApMetric::Coco] {
        // No detections: AP 0 for the class with ground truth; none for the others.
        let t = evaluate(&ds, &[], metric).unwrap();
        assert_eq!(t.classes[0].ap, Some(0.0));
        assert_eq!((t.classes[1].ap, t.classes[2].ap), (None, None), "b has no object, c only a difficult one");
        assert_eq!(t.map, 0.0);
        // A perfect box touching the border, a duplicate, a detection on the difficult object,
        // one on the empty image, a zero-area box, identical scores, a NaN score.
        let dets = [
            d(1, 0, BBox::new(0., 0., 99., 49.), 0.9),
            d(1, 0, BBox::new(0., 0., 99., 49.), 0.9),
            d(1, 0, BBox::new(10., 60., 30., 80.), 0.9),
            d(2, 0, BBox::new(5., 5., 20., 20.), 0.9),
            d(1, 0, BBox::new(5., 5., 5., 4.), 0.95),
            d(1, 1, BBox::new(0., 0., 99., 49.), f32::NAN),
            d(3, 2, BBox::new(0., 0., 9., 9.), 0.5),
        ];
        let t = evaluate(&ds, &dets, metric).unwrap();
        for c in &t.classes {
            assert!(c.ap.is_none_or(|a| a.is_finite() && (0.0..=1.0).contains(&a)), "{metric}: {c:?}");
        }
        assert!(t.map.is_finite());
        let ap = t.classes[0].ap.unwrap();
        // Ranked: zero-area FP (0.95), then the TP, its duplicate (FP), the difficult one
        // (ignored), the empty image's FP. Recall 1 at precision 1/2.
        match metric {
            ApMetric::Voc07 => assert!((ap - 0.5).abs() < 1e-12, "{ap}"),
            ApMetric::Voc => assert!((ap - 0.5).abs() < 1e-12, "{ap}"),
            ApMetric::Coco => assert!((ap - 0.5).abs() < 1e-12, "{ap}"),
        }
        // Deterministic with ties.
        assert_eq!(evaluate(&ds, &dets, metric).unwrap(), t);
    }
    // An empty dataset.
    let mut empty = tiny();
    empty.images.clear();
    assert_eq!(evaluate(&empty, &[], ApMetric::Coco).unwrap().map, 0.0);
}

#[test]
fn voc_ap_on_known_curves() {
    assert!((voc_ap(&[0.5, 1.0], &[1.0, 0.5], false) - 0.75).abs() < 1e-12);
    // 11-point: recall >= 0..0.5 -> 1.0 (6 points), 0.6..1.0 -> 0.5 (5 points).
    assert!((voc_ap(&[0.5, 1.0], &[1.0, 0.5], true) - (6.0 + 2.5) / 11.0).abs() < 1e-12);
    assert_eq!(voc_ap(&[], &[], true), 0.0);
    assert_eq!(voc_ap(&[], &[], false), 0.0);
}

/// The python with pycocotools (`$PYTHON`, else `python3`); `None` (skip) when there is none,
/// unless `FASTDET_REQUIRE_REFERENCES` is set (`make test`), where a missing reference fails.
fn python_with_pycocotools() -> Option<String> {
    let py = std::env::var("PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into());
    let ok = std::process::Command::new(&py)
        .args(["-c", "import pycocotools.cocoeval"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    assert!(
        std::env::var_os("FASTDET_REQUIRE_REFERENCES").is_none_or(|v| v.is_empty() || v == "0"),
        "{py} cannot import pycocotools, and FASTDET_REQUIRE_REFERENCES is set (make test): the golden references must run"
    );
    eprintln!("SKIPPED: {py} cannot import pycocotools; `source scripts/env.sh` (or `make test`) provides it");
    None
}

/// The ground truth as a COCO JSON for pycocotools: boxes as fastdet reads them, area w * h,
/// difficult objects as crowds (the rule of `ApMetric::Coco`).
fn coco_ground_truth(ds: &Dataset) -> Value {
    let mut anns = vec![];
    for r in &ds.images {
        for o in &r.objects {
            let b = o.bbox.to_xywh();
            anns.push(serde_json::json!({"id": anns.len() + 1, "image_id": r.id, "category_id": o.class + 1,
                "bbox": b, "area": b[2] as f64 * b[3] as f64, "iscrowd": o.difficult as u8}));
        }
    }
    let images: Vec<Value> = ds
        .images
        .iter()
        .map(|r| serde_json::json!({"id": r.id, "width": r.width, "height": r.height, "file_name": r.file_name}))
        .collect();
    let cats: Vec<Value> =
        ds.classes.iter().enumerate().map(|(c, n)| serde_json::json!({"id": c + 1, "name": n})).collect();
    serde_json::json!({"images": images, "annotations": anns, "categories": cats})
}

/// COCO's AP by object size and AR@1/10/100 (the report page's numbers) equal pycocotools'
/// `COCOeval.stats` on the same ground truth and detections: those of map.json (over 100
/// detections of a class in one image, zero-width boxes, crowds, tied scores), and the same
/// detections cut to the 5 best of each image (where AR@1 and AR@10 differ from AR@100 less).
/// tests/golden/coco_summary.py runs pycocotools on the files this test writes.
#[test]
fn coco_summary_equals_pycocotools() {
    let Some(py) = python_with_pycocotools() else { return };
    let g = golden();
    let ds = ground_truth(&g);
    let all = detections(&g);
    let mut few: Vec<Detection> = vec![];
    for r in &ds.images {
        let mut mine: Vec<Detection> = all.iter().filter(|d| d.image_id == r.id).copied().collect();
        mine.sort_by(|a, b| b.score.total_cmp(&a.score));
        few.extend(mine.into_iter().take(5));
    }
    let dir = tempfile::tempdir().unwrap();
    let gt_path = dir.path().join("gt.json");
    std::fs::write(&gt_path, coco_ground_truth(&ds).to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/coco_summary.py");
    for (name, dets) in [("map.json's detections", &all), ("the best 5 per image", &few)] {
        let dets_path = dir.path().join("dets.json");
        save_coco_results(&dets_path, dets, &ds).unwrap();
        let out = std::process::Command::new(&py).arg(script).arg(&gt_path).arg(&dets_path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
        let want: Vec<f64> = stats["stats"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let t = std::time::Instant::now();
        let got = fastdet::metrics::coco_summary(&ds, dets).unwrap();
        eprintln!("{name}: coco_summary in {:.0} ms: {got}", t.elapsed().as_secs_f64() * 1e3);
        let ours =
            [got.ap, got.ap50, got.ap75, got.ap_small, got.ap_medium, got.ap_large, got.ar1, got.ar10, got.ar100];
        for (i, (o, w)) in ours.iter().zip(&want).enumerate() {
            let o = o.unwrap_or(-1.0);
            assert!((o - w).abs() <= 1e-9, "{name}: stats[{i}] ({}): fastdet {o} vs pycocotools {w}", got.rows()[i].0);
        }
        // The summary's AP agrees with the COCO table's mAP.
        let table = evaluate(&ds, dets, ApMetric::Coco).unwrap();
        assert_eq!(got.ap, Some(table.map));
        assert!(want[3] > 0.0 && want[5] > 0.0 && want[6] < want[8], "{name}: every size has objects: {want:?}");
    }
}
