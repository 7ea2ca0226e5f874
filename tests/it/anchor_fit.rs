//! Anchor coverage and fitting (src/anchors/coverage.rs, src/anchors/fit.rs): the best IoU of
//! every object of the sample against torchvision's `box_iou` on the lesson's anchors built by
//! the lesson's numpy code (tests/golden/gen_anchor_iou.py); k-means recovering known shapes;
//! fitted anchors covering at least as well as the lesson's; the same seed, the same anchors.

use fastdet::anchors::coverage::{anchor_corners, unit_boxes, Coverage, UnitBox};
use fastdet::anchors::fit::{fit_anchors, fit_shapes, kmeans_shapes, shape_iou, FitOpts};
use fastdet::anchors::AnchorConfig;
use fastdet::data::{sample_root, Dataset, Pascal};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

fn sample() -> Dataset {
    Pascal::open(sample_root()).unwrap().json("train").unwrap()
}

/// Runs gen_anchor_iou.py on `boxes` and the anchors of each of `cfgs` (one python: torch
/// imports once).
fn torchvision_best(py: &str, cfgs: &[AnchorConfig], boxes: &[UnitBox]) -> Vec<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gen_anchor_iou.py");
    let spec = json!({
        "boxes": boxes.iter().map(|b| b.corners.to_vec()).collect::<Vec<_>>(),
        "configs": cfgs.iter().map(|c| json!({
            "grids": c.grids, "zooms": c.zooms, "ratios": c.ratios.iter().map(|r| [r.0, r.1]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(py)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn best_iou_of_every_sample_object_equals_torchvision_box_iou() {
    let Some(py) = crate::golden_torch::python() else { return };
    let boxes = unit_boxes(&sample(), 224).unwrap();
    assert!(boxes.len() > 100, "{} objects", boxes.len());
    // The lesson's two configs and a fitted-looking one with uneven ratios.
    let odd = AnchorConfig { grids: vec![4, 2, 1], zooms: vec![0.55, 1.6], ratios: vec![(1.3, 0.6), (0.4, 1.9)] };
    let cfgs = [AnchorConfig::lesson_4x4(), AnchorConfig::lesson_189(), odd];
    let all = torchvision_best(&py, &cfgs, &boxes);
    assert_eq!(all.len(), cfgs.len());
    for (cfg, theirs) in cfgs.iter().zip(all) {
        let ours = Coverage::new(cfg, &boxes).unwrap();
        assert_eq!(theirs["n_anchors"].as_u64().unwrap() as usize, anchor_corners(cfg).len());
        let best: Vec<f64> = theirs["best_iou"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut worst = 0.0f64;
        for (o, t) in ours.objects.iter().zip(&best) {
            worst = worst.max((o.best_iou as f64 - t).abs());
        }
        eprintln!("{cfg:?}: max |fastdet - torchvision| best IoU over {} objects = {worst:.2e}", best.len());
        assert!(worst < 1e-5, "{cfg:?}: best IoU differs from torchvision by {worst}");
        let recall = best.iter().filter(|&&b| b > 0.5).count() as f64 / best.len() as f64;
        assert!((ours.recall() - recall).abs() < 1e-12, "{} vs {recall}", ours.recall());
    }
}

/// `n` shapes around each of `shapes`, each side scaled by a factor in 0.9..1.1.
fn noisy_shapes(shapes: &[(f64, f64)], n: usize, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    shapes
        .iter()
        .flat_map(|&(h, w)| (0..n).map(|_| (h, w)).collect::<Vec<_>>())
        .map(|(h, w)| (h * rng.random_range(0.9..1.1), w * rng.random_range(0.9..1.1)))
        .collect()
}

const KNOWN: [(f64, f64); 3] = [(0.1, 0.1), (0.5, 0.2), (0.25, 0.7)];

#[test]
fn kmeans_and_its_refinement_recover_known_shapes() {
    let shapes = noisy_shapes(&KNOWN, 100, 1);
    for (name, fitted) in [
        ("k-means", kmeans_shapes(&shapes, 3, 0).unwrap()),
        ("k-means + genetic", fit_shapes(&shapes, 3, &FitOpts { generations: 300, ..Default::default() }).unwrap()),
    ] {
        for k in KNOWN {
            let best = fitted.iter().map(|&f| shape_iou(k, f)).fold(0.0, f64::max);
            assert!(best > 0.9, "{name}: {k:?} is recovered with IoU {best} only: {fitted:?}");
        }
    }
}

#[test]
fn the_same_seed_fits_the_same_anchors() {
    let boxes = unit_boxes(&sample(), 224).unwrap();
    let opts = FitOpts { generations: 50, ..Default::default() };
    let a = fit_anchors(&AnchorConfig::lesson_189(), &boxes, &opts).unwrap();
    let b = fit_anchors(&AnchorConfig::lesson_189(), &boxes, &opts).unwrap();
    assert_eq!(a, b);
    let c = fit_anchors(&AnchorConfig::lesson_189(), &boxes, &FitOpts { seed: 1, ..opts }).unwrap();
    assert_ne!(a.config, c.config, "another seed, another search");
}

#[test]
fn fitted_anchors_cover_the_sample_at_least_as_well_as_the_lessons() {
    let boxes = unit_boxes(&sample(), 224).unwrap();
    let opts = FitOpts { generations: 150, ..Default::default() };
    for cfg in [AnchorConfig::lesson_4x4(), AnchorConfig::lesson_189()] {
        let fit = fit_anchors(&cfg, &boxes, &opts).unwrap();
        eprint!("before: {}after: {}", fit.before, fit.after);
        assert_eq!((fit.config.grids.clone(), fit.config.k()), (cfg.grids.clone(), cfg.k()), "the head's shape");
        assert!(fit.after.mean_best_iou() >= fit.before.mean_best_iou());
        assert!(fit.after.mean_best_iou() > fit.before.mean_best_iou() + 0.01, "the lesson's anchors leave room");
    }
}

#[test]
fn fitted_anchors_cover_boxes_the_lessons_miss() {
    // Wide flat boxes (0.1 high, 0.6 wide) and tall thin ones, centred on the 4x4 cells' centres:
    // the lesson's anchors (ratios 1:2 at most) cover none of them over 0.5.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut boxes = vec![];
    for i in 0..200 {
        let (h, w) = if i % 2 == 0 { (0.1, 0.6) } else { (0.6, 0.1) };
        let (h, w) = (h * rng.random_range(0.95..1.05), w * rng.random_range(0.95..1.05));
        let (cy, cx) = (0.125 + 0.25 * rng.random_range(0..4) as f64, 0.125 + 0.25 * rng.random_range(0..4) as f64);
        let c = [cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0].map(|v| v as f32);
        boxes.push(UnitBox { image: i, object: 0, corners: c });
    }
    let fit =
        fit_anchors(&AnchorConfig::lesson_189(), &boxes, &FitOpts { generations: 300, ..Default::default() }).unwrap();
    eprint!("before: {}after: {}", fit.before, fit.after);
    assert!(fit.before.recall() < 0.1, "{}", fit.before.recall());
    assert!(fit.after.recall() > 0.9, "{}", fit.after.recall());
    assert!(fit.after.uncovered().len() < fit.before.uncovered().len());
}
