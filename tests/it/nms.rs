//! NMS against torchvision (tests/golden/gen_nms.py writes tests/golden/nms.json), the plain
//! reference loop, the lesson's variants and the edge cases.

use crate::common;
use fastdet::boxes::{iou_matrix, jaccard, BBox};
use fastdet::nms::{batched_nms, nms, nms_detections, nms_lesson, NmfOpts};
use fastdet::tch::Tensor;
use serde_json::Value;

/// The test oracle: torchvision's CPU kernel (`nms_kernel_impl`) line by line. A stable sort by
/// score, descending (`-0.0` ties `0.0`, NaN last), then for each box not yet suppressed, keep
/// it and suppress every later box with `IoU > iou_threshold`. `O(n^2)`; [`nms`] must keep the
/// same boxes in the same order.
fn nms_reference(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Vec<usize> {
    assert_eq!(boxes.len(), scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| match (scores[i].is_nan(), scores[j].is_nan()) {
        (false, false) => scores[j].partial_cmp(&scores[i]).unwrap(),
        (a, b) => a.cmp(&b),
    });
    let area: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let bi = boxes[i];
        for &j in &order[pi + 1..] {
            if suppressed[j] {
                continue;
            }
            let bj = boxes[j];
            // std::max / std::min as C++ writes them (same as f32::max/min for non-NaN).
            let xx1 = if bi[0] < bj[0] { bj[0] } else { bi[0] };
            let yy1 = if bi[1] < bj[1] { bj[1] } else { bi[1] };
            let xx2 = if bj[2] < bi[2] { bj[2] } else { bi[2] };
            let yy2 = if bj[3] < bi[3] { bj[3] } else { bi[3] };
            let w = if 0.0 < xx2 - xx1 { xx2 - xx1 } else { 0.0 };
            let h = if 0.0 < yy2 - yy1 { yy2 - yy1 } else { 0.0 };
            let inter = w * h;
            let ovr = inter / (area[i] + area[j] - inter);
            if ovr as f64 > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// The lesson's `nms` on slices, through [`nms_lesson`]: the kept indices, best first.
fn nms_topk(boxes: &[[f32; 4]], scores: &[f32], overlap: f64, top_k: usize) -> Vec<usize> {
    let b = Tensor::from_slice(&boxes.concat()).view([-1, 4]);
    let (keep, count) = nms_lesson(&b, &Tensor::from_slice(scores), overlap, top_k).unwrap();
    Vec::<i64>::try_from(keep).unwrap()[..count].iter().map(|&i| i as usize).collect()
}

fn golden() -> Value {
    common::golden("nms.json")
}

fn boxes_of(v: &Value) -> Vec<[f32; 4]> {
    let f: Vec<f32> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    f.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

#[test]
fn nms_keeps_what_torchvision_keeps() {
    let g = golden();
    let mut checked = 0;
    for case in g["nms"].as_array().unwrap() {
        let (b, s) = (boxes_of(&case["boxes"]), floats(&case["scores"]));
        for k in case["keeps"].as_array().unwrap() {
            let thr = k["iou"].as_f64().unwrap();
            let want = ints(&k["keep"]);
            let name = format!("{} iou={thr}", case["name"]);
            assert_eq!(nms(&b, &s, thr).unwrap(), want, "{name}: nms");
            assert_eq!(nms_reference(&b, &s, thr), want, "{name}: nms_reference");
            // The (y1, x1, y2, x2) order gives the same result (IoU is symmetric in the axes).
            let yx: Vec<[f32; 4]> = b.iter().map(|c| [c[1], c[0], c[3], c[2]]).collect();
            assert_eq!(nms(&yx, &s, thr).unwrap(), want, "{name}: nms on (y1, x1, y2, x2)");
            checked += 1;
        }
    }
    assert!(checked >= 30);
}

#[test]
fn batched_nms_keeps_what_torchvision_keeps() {
    let g = golden();
    for case in g["batched"].as_array().unwrap() {
        let (b, s, c) = (boxes_of(&case["boxes"]), floats(&case["scores"]), ints(&case["classes"]));
        let got = batched_nms(&b, &s, &c, case["iou"].as_f64().unwrap()).unwrap();
        assert_eq!(got, ints(&case["keep"]), "{}", case["name"]);
    }
}

#[test]
fn jaccard_matches_the_lesson() {
    let g = golden();
    let j = &g["jaccard"];
    let (a, b, want) = (floats(&j["a"]), floats(&j["b"]), floats(&j["iou"]));
    let got: Vec<f32> =
        Vec::try_from(jaccard(&Tensor::from_slice(&a).view([-1, 4]), &Tensor::from_slice(&b).view([-1, 4])).view([-1]))
            .unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
    }
    // The slice version agrees (no NaN-to-0 case here).
    let ab: Vec<BBox> = a.chunks(4).map(|c| BBox::new(c[0], c[1], c[2], c[3])).collect();
    let bb: Vec<BBox> = b.chunks(4).map(|c| BBox::new(c[0], c[1], c[2], c[3])).collect();
    let m = iou_matrix(&ab, &bb);
    assert_eq!((m.rows, m.cols), (6, 5));
    for (g, w) in m.data.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
    }
}

/// A small seeded generator (no extra dependency).
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32) / (1u64 << 24) as f32
}

#[test]
fn fast_nms_equals_the_reference_loop() {
    let mut seed = 7;
    for &(n, extent, side) in &[(100, 50.0, 40.0), (3000, 1000.0, 60.0), (3000, 200.0, 150.0), (2000, 1000.0, 900.0)] {
        let b: Vec<[f32; 4]> = (0..n)
            .map(|_| {
                let (x, y) = (lcg(&mut seed) * extent, lcg(&mut seed) * extent);
                [x, y, x + lcg(&mut seed) * side, y + lcg(&mut seed) * side]
            })
            .collect();
        let s: Vec<f32> = (0..n).map(|_| (lcg(&mut seed) * 20.0).round() / 20.0).collect(); // ties
        for thr in [0.0, 0.1, 0.45, 0.9, -0.5, f64::NAN, 2.0] {
            assert_eq!(nms(&b, &s, thr).unwrap(), nms_reference(&b, &s, thr), "n={n} side={side} thr={thr}");
        }
    }
}

#[test]
fn ties_are_broken_by_index_and_deterministic() {
    let b = vec![[0., 0., 10., 10.]; 5];
    assert_eq!(nms(&b, &[1.0; 5], 0.5).unwrap(), vec![0]);
    // Apart boxes: the order alone, ties by index, -0.0 tying 0.0.
    let apart: Vec<[f32; 4]> = (0..6).map(|i| [i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0]).collect();
    assert_eq!(nms(&apart, &[0.5, 0.7, 0.5, -0.0, 0.0, 0.7], 0.5).unwrap(), vec![1, 5, 0, 2, 3, 4]);
    // Non-overlapping boxes with equal scores come out in index order, every time.
    let b: Vec<[f32; 4]> = (0..50).map(|i| [i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0]).collect();
    let first = nms(&b, &[0.3; 50], 0.5).unwrap();
    assert_eq!(first, (0..50).collect::<Vec<_>>());
    for _ in 0..3 {
        assert_eq!(nms(&b, &[0.3; 50], 0.5).unwrap(), first);
    }
}

#[test]
fn nan_scores_go_last_and_degenerate_boxes_never_panic() {
    let b = vec![[0., 0., 10., 10.], [0., 0., 10., 10.], [5., 5., 5., 9.], [5., 5., 5., 9.], [f32::NAN, 0., 1., 1.]];
    let s = [f32::NAN, 0.2, 0.9, 0.8, 0.5];
    let keep = nms(&b, &s, 0.5).unwrap();
    // Zero-width boxes (2, 3) neither suppress nor get suppressed; box 0 (NaN score) is last
    // and suppressed by box 1.
    assert_eq!(keep, vec![2, 3, 4, 1]);
    assert_eq!(keep, nms_reference(&b, &s, 0.5));
    assert!(nms(&[], &[], 0.5).unwrap().is_empty());
    assert!(nms(&b, &s[..2], 0.5).is_err());
    let m = iou_matrix(&[BBox::new(5., 5., 5., 5.)], &[BBox::new(5., 5., 5., 5.)]);
    assert_eq!(m.data, vec![0.0]);
}

#[test]
fn nms_on_bboxes_and_border_boxes() {
    let b = [BBox::new(0., 0., 100., 100.), BBox::new(0., 0., 100., 90.), BBox::new(0., 150., 50., 223.)];
    let b: Vec<[f32; 4]> = b.iter().map(BBox::to_array).collect();
    assert_eq!(nms(&b, &[0.9, 0.8, 0.7], 0.5).unwrap(), vec![0, 2]);
}

#[test]
fn lesson_nms_cuts_top_k_first_and_keeps_iou_le_overlap() {
    // Box 1 overlaps box 0 by exactly 0.5: the lesson keeps it (IoU <= overlap), as does
    // torchvision (IoU > 0.5 suppresses).
    let b = [[0., 0., 10., 10.], [0., 0., 10., 5.], [20., 20., 30., 30.], [40., 40., 50., 50.]];
    let s = [0.9, 0.8, 0.7, 0.6];
    assert_eq!(nms_topk(&b, &s, 0.5, 100), vec![0, 1, 2, 3]);
    assert_eq!(nms_topk(&b, &s, 0.49, 100), vec![0, 2, 3]);
    assert_eq!(nms_topk(&b, &s, 0.5, 2), vec![0, 1]);
    let (keep, count) =
        nms_lesson(&Tensor::from_slice(&b.concat()).view([-1, 4]), &Tensor::from_slice(&s), 0.49, 100).unwrap();
    assert_eq!(count, 3);
    assert_eq!(Vec::<i64>::try_from(keep).unwrap(), vec![0, 2, 3, 0]);
    // Away from exact ties the lesson's nms keeps what torchvision keeps (top_k not binding).
    let g = golden();
    let case = &g["nms"][4]; // random n=200
    let (b, s) = (boxes_of(&case["boxes"]), floats(&case["scores"]));
    for k in case["keeps"].as_array().unwrap() {
        let thr = k["iou"].as_f64().unwrap();
        if thr > 0.0 && thr < 1.0 {
            assert_eq!(nms_topk(&b, &s, thr, 1000), ints(&k["keep"]), "iou={thr}");
        }
    }
}

#[test]
fn nms_detections_per_class() {
    // 4 anchors, 2 classes + background. Class 0: anchors 0 and 1 overlap (IoU 0.81), 0 wins;
    // anchor 3 is below 0.25. Class 1: only anchor 2.
    let boxes =
        Tensor::from_slice(&[0.1f32, 0.1, 0.5, 0.5, 0.12, 0.12, 0.5, 0.5, 0.6, 0.6, 0.9, 0.9, 0.0, 0.0, 1.0, 1.0])
            .view([4, 4]);
    let logit = |p: f32| (p / (1.0 - p)).ln();
    let l = [
        [logit(0.9), logit(0.1), 0.0],
        [logit(0.8), logit(0.1), 0.0],
        [logit(0.1), logit(0.7), 0.0],
        [logit(0.2), logit(0.2), 5.0],
    ];
    let logits = Tensor::from_slice(&l.concat()).view([4, 3]);
    let d = nms_detections(&boxes, &logits, 224.0, NmfOpts::default()).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!((d[0].class, d[1].class), (0, 1));
    assert!((d[0].score - 0.9).abs() < 1e-6 && (d[1].score - 0.7).abs() < 1e-6);
    assert!((d[0].bbox.top - 22.4).abs() < 1e-4 && (d[0].bbox.right - 112.0).abs() < 1e-4);
    assert!(nms_detections(&boxes, &logits.narrow(0, 0, 3), 224.0, NmfOpts::default()).is_err());
}

#[test]
fn batched_nms_any_class_ids() {
    let b = [[0., 0., 10., 10.], [0., 0., 10., 9.], [0., 0., 10., 9.5]];
    let keep = batched_nms(&b, &[0.5, 0.9, 0.7], &[usize::MAX, 3, usize::MAX], 0.5).unwrap();
    assert_eq!(keep, vec![1, 2]);
    assert!(batched_nms(&b, &[0.5, 0.9, 0.7], &[0, 1], 0.5).is_err());
    assert!(batched_nms(&[], &[], &[], 0.5).unwrap().is_empty());
}
