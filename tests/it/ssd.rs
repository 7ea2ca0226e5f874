//! Lesson 9's SSD against the lesson's own Python: `tests/golden/ssd.json`, written by
//! `tests/golden/gen_ssd.py` (verbatim ports of the notebook's anchors, `jaccard`,
//! `actn_to_bb`, `map_to_ground_truth`, `BCE_Loss`, `FocalLoss`, `ssd_1_loss`, `ssd_loss`,
//! `flatten_conv`), plus head shapes, edge cases and a short training run.

use crate::common;
use fastdet::anchors::{actn_to_bb, AnchorConfig, Anchors};
use fastdet::boxes::jaccard as iou;
use fastdet::data::BatchTarget;
use fastdet::data::TargetKind;
use fastdet::model::ssd::*;
use fastdet::model::ssd_loss::*;
use fastdet::model::{feature_side, group_of, Arch, ConvModel, HeadKind, Loss, Model, ModelOutput, ModelSpec};
use proptest::prelude::*;
use serde_json::Value;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use crate::common::{f64s, tensor};

fn golden() -> Value {
    common::golden("ssd.json")
}

fn ints(v: &Value) -> Tensor {
    Tensor::from_slice(&f64s(v).into_iter().map(|x| x as i64).collect::<Vec<_>>())
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// `sin(0.7 i + 0.3) * scale + shift` over the flat index, as `det()` in gen_ssd.py.
fn det(shape: &[i64], scale: f64, shift: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i as f64 * 0.7 + 0.3).sin() * scale + shift) as f32).collect();
    Tensor::from_slice(&v).view(shape)
}

#[track_caller]
fn close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {} expected", got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= atol + rtol * b.abs(), "{what}[{i}]: {a} vs PyTorch {b}");
    }
}

#[track_caller]
fn close1(what: &str, got: f64, want: f64, rtol: f64) {
    close(what, &[got], &[want], rtol, 1e-7);
}

fn checksums(t: &Tensor) -> Vec<f64> {
    let v = to_vec(t);
    let s: f64 = v.iter().sum();
    let a: f64 = v.iter().map(|x| x.abs()).sum();
    let w: f64 = v.iter().enumerate().map(|(i, x)| x * (i as f64 * 0.3).cos()).sum();
    vec![s, a, w]
}

/// An SSD of `cfg` on a ResNet18 for `sz x sz` images (its loss uses its own anchors).
fn ssd_model(cfg: &SsdConfig, sz: u32) -> Model {
    let names = (0..cfg.n_classes).map(|c| format!("c{c}")).collect();
    let spec =
        ModelSpec::new(TargetKind::AllBoxes, names, sz, Arch::ResNet18, HeadKind::Ssd(cfg.clone()), Loss::Ssd {});
    Model::new(spec, Device::Cpu)
}

// ---------------------------------------------------------------------------------------------
// Anchors

fn check_anchors(a: &Anchors, g: &Value, n: i64) {
    let anc = tensor(&g["anchors"], &[n, 4]);
    close("centres", &to_vec(&a.centers), &to_vec(&anc.narrow(1, 0, 2)), 0.0, 1e-7);
    close("sizes", &to_vec(&a.sizes), &to_vec(&anc.narrow(1, 2, 2)), 0.0, 1e-7);
    let gs = f64s(&g["grid_sizes"]);
    let gs = if gs.len() == 1 { vec![gs[0]; n as usize] } else { gs }; // the 4x4 version has one
    close("grid_sizes", &to_vec(&a.grid_sizes), &gs, 0.0, 1e-7);
    close("corners", &to_vec(&a.corners), &f64s(&g["anchor_cnr"]), 0.0, 1e-7);
}

#[test]
fn anchors_match_the_lesson_in_order() {
    let _rng = crate::common::torch_rng();
    let g = golden();
    let a4 = Anchors::new(&AnchorConfig::lesson_4x4(), Device::Cpu);
    assert_eq!((a4.len(), AnchorConfig::lesson_4x4().k()), (16, 1)); // 4*4 cells, k = 1
    check_anchors(&a4, &g["anchors_4x4"], 16);
    let cfg = AnchorConfig::lesson_189();
    assert_eq!((cfg.k(), cfg.len()), (9, 189)); // (16 + 4 + 1) * 9
    let a = Anchors::new(&cfg, Device::Cpu);
    check_anchors(&a, &g["anchors_189"], 189);
    // Row (y) slowest: anchor 9 is the second cell of the first row, x = 3/8.
    assert_eq!(to_vec(&a.centers.get(9)), vec![0.125, 0.375]);
}

#[test]
fn anchors_draw() {
    let _rng = crate::common::torch_rng();
    let im = image::RgbImage::from_pixel(224, 224, image::Rgb([90, 120, 150]));
    let fig = Anchors::new(&AnchorConfig::lesson_189(), Device::Cpu).show(&im, 0).unwrap();
    assert!(fig.to_png().unwrap().len() > 1000);
    assert_eq!(
        Anchors::new(&AnchorConfig::lesson_4x4(), Device::Cpu).to_bboxes(224.0).unwrap()[5].to_array(),
        [56.0, 56.0, 112.0, 112.0]
    );
}

// ---------------------------------------------------------------------------------------------
// Geometry

#[test]
fn iou_is_the_lessons_jaccard() {
    let _rng = crate::common::torch_rng();
    let g = &golden()["jaccard"];
    let (a, b) = (tensor(&g["a"], &[5, 4]), tensor(&g["b"], &[7, 4]));
    let got = iou(&a, &b); // [5, 7]
    assert_eq!(got.size(), [5, 7]);
    close("iou", &to_vec(&got), &f64s(&g["iou"]), 1e-6, 1e-7);
}

#[test]
fn actn_to_bb_is_the_lessons() {
    let _rng = crate::common::torch_rng();
    let g = &golden()["actn_to_bb"];
    let a = Anchors::new(&AnchorConfig::lesson_189(), Device::Cpu);
    let got = actn_to_bb(&tensor(&g["actn"], &[189, 4]), &a);
    close("actn_to_bb", &to_vec(&got), &f64s(&g["bb"]), 1e-6, 1e-7);
}

#[test]
fn flatten_conv_is_the_lessons() {
    let _rng = crate::common::torch_rng();
    let g = &golden()["flatten_conv"];
    let x = Tensor::arange(2 * 6 * 2 * 3, (Kind::Float, Device::Cpu)).view([2, 6, 2, 3]);
    let got = flatten_conv(&x, 2); // [2, 6, 2, 3] -> [2, 2*3*2, 6/2] = [2, 12, 3]
    assert_eq!(got.size(), [2, 12, 3]);
    close("flatten_conv", &to_vec(&got), &f64s(&g["out"]), 0.0, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Matching

#[test]
fn map_to_ground_truth_lesson_mode() {
    let _rng = crate::common::torch_rng();
    let g = &golden()["map_to_ground_truth"];
    let ov = tensor(&g["overlaps"], &[3, 16]);
    let (o, i) = map_to_ground_truth(&ov, Matching::Lesson).unwrap();
    close("gt_overlap", &to_vec(&o), &f64s(&g["gt_overlap"]), 1e-7, 1e-7);
    assert_eq!(to_vec(&i), f64s(&g["gt_idx"]));
    // The flaw: gts 0 and 2 share best anchor 5; gt 0's best overlap 0.95 is lost.
    assert_eq!(to_vec(&i)[5], 2.0);
}

#[test]
fn map_to_ground_truth_loses_no_gt() {
    let _rng = crate::common::torch_rng();
    let g = &golden()["map_to_ground_truth"];
    let ov = tensor(&g["overlaps"], &[3, 16]);
    let (o, i) = map_to_ground_truth(&ov, Matching::NoGtLost).unwrap();
    let (o, i) = (to_vec(&o), to_vec(&i));
    // gt 0 (best 0.95) keeps anchor 5; gt 2 takes its next-best free anchor.
    assert_eq!(i[5], 0.0);
    let forced: Vec<usize> = (0..16).filter(|&a| o[a] == 1.99f32 as f64).collect();
    let mut gts: Vec<i64> = forced.iter().map(|&a| i[a] as i64).collect();
    gts.sort();
    assert_eq!(gts, vec![0, 1, 2], "every gt has its own forced anchor: {forced:?}");
    let ovv = to_vec(&ov);
    let a2 = forced.iter().copied().find(|&a| i[a] == 2.0).unwrap();
    let next_best = (0..16).filter(|&a| a != 5).max_by(|&a, &b| ovv[32 + a].total_cmp(&ovv[32 + b])).unwrap();
    assert_eq!(a2, next_best);
}

#[test]
fn matching_modes_agree_without_conflicts() {
    let _rng = crate::common::torch_rng();
    // Distinct best anchors: both modes give the lesson's answer.
    for seed in 0..20 {
        tch::manual_seed(seed);
        let ov = Tensor::rand([4, 30], (Kind::Float, Device::Cpu));
        let best: Vec<i64> = Vec::try_from(ov.argmax(1, false)).unwrap();
        let mut uniq = best.clone();
        uniq.sort();
        uniq.dedup();
        let (o1, i1) = map_to_ground_truth(&ov, Matching::Lesson).unwrap();
        let (o2, i2) = map_to_ground_truth(&ov, Matching::NoGtLost).unwrap();
        if uniq.len() == best.len() {
            assert_eq!(to_vec(&o1), to_vec(&o2));
            assert_eq!(to_vec(&i1), to_vec(&i2));
        }
    }
}

#[test]
fn matching_more_gts_than_anchors_and_ties() {
    let _rng = crate::common::torch_rng();
    // 20 gts, 16 anchors, every overlap the same: deterministic, each anchor forced once.
    let v = vec![0.5f32; 20 * 16];
    let (o, i) = match_anchors(&v, 20, 16, Matching::NoGtLost).unwrap();
    assert!(o.iter().all(|&x| x == 1.99));
    let mut gts = i.clone();
    gts.sort();
    gts.dedup();
    assert_eq!(gts.len(), 16, "16 different gts get the 16 anchors");
    assert_eq!(match_anchors(&v, 20, 16, Matching::NoGtLost).unwrap(), (o, i));
    // Lesson mode with ties: the first index wins everywhere, as torch's max(dim).
    let (o, i) = match_anchors(&v, 20, 16, Matching::Lesson).unwrap();
    assert_eq!(o[0], 1.99);
    assert_eq!(i[0], 19); // every gt's best anchor is 0; the last one wins
    assert!(i[1..].iter().all(|&g| g == 0) && o[1..].iter().all(|&x| x == 0.5));
    // NaN overlaps are never preferred, and no gts at all is fine.
    // gt 1 (best 0.3) takes anchor 1 first; gt 0's NaN anchor 0 is all that is left for it.
    let (o, i) = match_anchors(&[f32::NAN, 0.2, 0.1, 0.3], 2, 2, Matching::NoGtLost).unwrap();
    assert_eq!((o, i), (vec![1.99, 1.99], vec![0, 1]));
    let (o, i) = match_anchors(&[f32::NAN, 0.2], 1, 2, Matching::Lesson).unwrap();
    assert_eq!((o, i), (vec![0.0, 1.99], vec![0, 0]));
    assert_eq!(match_anchors(&[], 0, 3, Matching::NoGtLost).unwrap(), (vec![0.0; 3], vec![0; 3]));
    assert!(match_anchors(&[0.5; 5], 2, 3, Matching::NoGtLost).is_err(), "5 overlaps for 2 x 3");
}

// ---------------------------------------------------------------------------------------------
// Losses

#[test]
fn bce_and_focal_losses_match_the_lesson() {
    let _rng = crate::common::torch_rng();
    let g = golden();
    for (case, gamma) in g["class_loss"].as_array().unwrap().iter().zip([1.0, 2.0]) {
        let targ = ints(&case["targ"]);
        for (name, loss) in [("bce", ClassLoss::Bce), ("focal", ClassLoss::Focal { alpha: 0.25, gamma })] {
            let pred = tensor(&case["pred"], &[16, 21]).set_requires_grad(true);
            let l = class_loss(&pred, &targ, loss);
            close1(
                &format!("{name} gamma {gamma}"),
                f64::try_from(&l).unwrap(),
                case[name]["loss"].as_f64().unwrap(),
                1e-5,
            );
            l.backward();
            close(&format!("{name} grad"), &to_vec(&pred.grad()), &f64s(&case[name]["grad"]), 1e-4, 1e-7);
        }
        let bce = class_loss(&tensor(&case["pred"], &[16, 21]), &targ, ClassLoss::Bce);
        close1("bce vs fused", f64::try_from(&bce).unwrap(), case["bce_fused"].as_f64().unwrap(), 1e-5);
    }
    assert_eq!(ClassLoss::focal(), ClassLoss::Focal { alpha: 0.25, gamma: 1.0 });
}

fn lesson_cfg(class_loss: ClassLoss) -> SsdConfig {
    SsdConfig::lesson_189(20).with_class_loss(class_loss).with_matching(Matching::Lesson)
}

#[test]
fn ssd_loss_matches_the_lesson() {
    let _rng = crate::common::torch_rng();
    let g = golden();
    let s = &g["ssd"];
    let anchors = Anchors::new(&AnchorConfig::lesson_189(), Device::Cpu);
    let bbox = tensor(&s["bbox"], &[2, 4, 4]);
    let clas = ints(&s["clas"]).view([2, 4]);
    let sz = s["sz"].as_f64().unwrap();
    for (name, cl) in [("bce", ClassLoss::Bce), ("focal", ClassLoss::focal())] {
        let want = &s[name];
        let cfg = lesson_cfg(cl);
        let b_c = det(&[2, 189, 21], 2.0, -3.0).set_requires_grad(true);
        let b_bb = det(&[2, 189, 4], 1.5, 0.0).set_requires_grad(true);
        // ssd_1_loss, image by image, after the lesson's get_y
        for i in 0..2 {
            let (bb, cc) = get_y(&bbox.get(i), &clas.get(i), sz);
            let p = ssd_1_loss(&b_c.get(i), &b_bb.get(i), &bb, &cc, &anchors, &cfg).unwrap();
            close1(&format!("{name} loc {i}"), f64::try_from(&p.loc).unwrap(), f64s(&want["loc"])[i as usize], 1e-5);
            close1(
                &format!("{name} clas {i}"),
                f64::try_from(&p.class).unwrap(),
                f64s(&want["clas"])[i as usize],
                1e-5,
            );
        }
        // ssd_loss over the batch, lesson padding removal
        let out = SsdOutput { class_logits: b_c.shallow_clone(), box_offsets: b_bb.shallow_clone() };
        let parts = ssd_loss(&out, &bbox, &clas, None, sz, &anchors, &cfg).unwrap();
        let total = parts.total();
        close1(&format!("{name} total"), f64::try_from(&total).unwrap(), want["total"].as_f64().unwrap(), 1e-5);
        total.backward();
        close(&format!("{name} grad bb0"), &to_vec(&b_bb.grad().get(0)), &f64s(&want["grad_bb0"]), 1e-4, 1e-7);
        close(&format!("{name} grad bb sums"), &checksums(&b_bb.grad()), &f64s(&want["grad_bb_checksums"]), 1e-4, 1e-6);
        close(&format!("{name} grad c sums"), &checksums(&b_c.grad()), &f64s(&want["grad_c_checksums"]), 1e-4, 1e-6);
        for (row, v) in want["grad_c0_rows"].as_object().unwrap() {
            let r: i64 = row.parse().unwrap();
            close(&format!("{name} grad c0 row {r}"), &to_vec(&b_c.grad().get(0).get(r)), &f64s(v), 1e-4, 1e-7);
        }
        // The same targets with n_objects (the loader's padding count) and through Loss::compute.
        let n_objects = Tensor::from_slice(&[3i64, 1]);
        let with_n = ssd_loss(&out, &bbox, &clas, Some(&n_objects), sz, &anchors, &cfg).unwrap().total();
        close1("n_objects", f64::try_from(&with_n).unwrap(), want["total"].as_f64().unwrap(), 1e-5);
        let y = BatchTarget::Boxes { bbox: bbox.shallow_clone(), class: clas.shallow_clone(), n_objects };
        let model = ssd_model(&cfg, sz as u32);
        let via = model.loss(&ModelOutput::Ssd(out.shallow_clone()), &y).unwrap();
        close1("Model::loss", f64::try_from(&via).unwrap(), want["total"].as_f64().unwrap(), 1e-5);
    }
    // The matching of image 0.
    let (bb, _) = get_y(&bbox.get(0), &clas.get(0), sz);
    let (o, i) = map_to_ground_truth(&iou(&bb, &anchors.corners), Matching::Lesson).unwrap();
    close("match0 overlap", &to_vec(&o), &f64s(&s["match0"]["gt_overlap"]), 1e-6, 1e-7);
    assert_eq!(to_vec(&i), f64s(&s["match0"]["gt_idx"]));
}

/// The lesson's "Testing" cells on image 0 (tests/golden/gen_ssd.py: `overlaps.max(1)`,
/// `overlaps.max(0)`, `map_to_ground_truth`, `gt_clas` with `bg` at threshold 0.5, the loc loss
/// and `F.cross_entropy`) against `trace_ssd_1_loss`; and `print_ssd_loss` returns `ssd_loss`.
#[test]
fn the_testing_walk_through_matches_the_lesson() {
    let _rng = crate::common::torch_rng();
    let g = golden();
    let s = &g["ssd"];
    let t = &s["testing0"];
    let anchors = Anchors::new(&AnchorConfig::lesson_189(), Device::Cpu);
    let bbox = tensor(&s["bbox"], &[2, 4, 4]);
    let clas = ints(&s["clas"]).view([2, 4]);
    let sz = s["sz"].as_f64().unwrap();
    let b_c = det(&[2, 189, 21], 2.0, -3.0);
    let b_bb = det(&[2, 189, 4], 1.5, 0.0);
    let (bb, cc) = get_y(&bbox.get(0), &clas.get(0), sz);
    let mut cfg = lesson_cfg(ClassLoss::Bce);
    cfg.pos_iou = 0.5;
    let tr = trace_ssd_1_loss(&b_c.get(0), &b_bb.get(0), &bb, &cc, &anchors, &cfg).unwrap();
    let usizes = |v: &Value| f64s(v).into_iter().map(|x| x as usize).collect::<Vec<_>>();
    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    close("prior_overlap", &f(&tr.prior_overlap), &f64s(&t["prior_overlap"]), 1e-6, 1e-7);
    assert_eq!(tr.prior_idx, usizes(&t["prior_idx"]));
    close("anchor_overlap", &f(&tr.anchor_overlap), &f64s(&t["anchor_overlap"]), 1e-6, 1e-7);
    assert_eq!(tr.anchor_idx, usizes(&t["anchor_idx"]), "overlaps.max(0), ties to the first object");
    close("gt_overlap", &f(&tr.gt_overlap), &f64s(&t["gt_overlap"]), 1e-6, 1e-7);
    assert_eq!(tr.gt_idx.iter().map(|&i| i as usize).collect::<Vec<_>>(), usizes(&t["gt_idx"]));
    assert_eq!(tr.gt_clas, usizes(&t["gt_clas"]));
    assert_eq!(tr.pos_idx, usizes(&t["pos_idx"]));
    close1("loc_loss", tr.loc, t["loc_loss"].as_f64().unwrap(), 1e-5);
    close1("cross_entropy", tr.cross_entropy, t["cross_entropy"].as_f64().unwrap(), 1e-5);
    close1("BCE clas loss", tr.class, t["bce_clas_loss"].as_f64().unwrap(), 1e-5);
    let classes: Vec<String> = (0..20).map(|c| format!("c{c}")).collect();
    let names = tr.class_names(&classes);
    assert_eq!(names.iter().filter(|n| **n == "bg").count(), 189 - tr.pos_idx.len());
    assert_eq!(names[tr.pos_idx[0]], classes[tr.gt_clas[tr.pos_idx[0]]]);
    assert!(
        trace_ssd_1_loss(&b_c.get(0), &b_bb.get(0), &bb.narrow(0, 0, 0), &cc.narrow(0, 0, 0), &anchors, &cfg).is_err(),
        "no objects"
    );

    let cfg = lesson_cfg(ClassLoss::Bce);
    let out = SsdOutput { class_logits: b_c.shallow_clone(), box_offsets: b_bb.shallow_clone() };
    let printed = print_ssd_loss(&out, &bbox, &clas, None, sz, &anchors, &cfg).unwrap();
    close1("print_ssd_loss", f64::try_from(printed.total()).unwrap(), s["bce"]["total"].as_f64().unwrap(), 1e-5);
}

#[test]
fn ssd_loss_edge_cases_are_finite() {
    let _rng = crate::common::torch_rng();
    let anchors = Anchors::new(&AnchorConfig::lesson_4x4(), Device::Cpu);
    let out = SsdOutput {
        class_logits: det(&[4, 16, 21], 1.0, -3.0).set_requires_grad(true),
        box_offsets: det(&[4, 16, 4], 1.0, 0.0).set_requires_grad(true),
    };
    // image 0: no objects; 1: 20 objects (more than the 16 anchors); 2: degenerate boxes (zero
    // height, zero width, inverted); 3: one box covering the image.
    let n = 20;
    let mut bb = vec![0f32; 4 * n * 4];
    let mut cl = vec![0i64; 4 * n];
    for k in 0..n {
        let (y, x) = ((k / 5) as f32 * 50.0, (k % 5) as f32 * 40.0);
        bb[(n + k) * 4..][..4].copy_from_slice(&[y, x, y + 30.0, x + 30.0]);
        cl[n + k] = (k % 20) as i64;
    }
    for (j, b) in [[10.0, 10.0, 10.0, 50.0], [10.0, 10.0, 50.0, 10.0], [60.0, 60.0, 20.0, 20.0]].iter().enumerate() {
        bb[(2 * n + n - 3 + j) * 4..][..4].copy_from_slice(b);
    }
    bb[(3 * n + n - 1) * 4..][..4].copy_from_slice(&[0.0, 0.0, 223.0, 223.0]);
    let bbox = Tensor::from_slice(&bb).view([4, n as i64, 4]);
    let class = Tensor::from_slice(&cl).view([4, n as i64]);
    let n_objects = Tensor::from_slice(&[0i64, 20, 3, 1]);
    for matching in [Matching::Lesson, Matching::NoGtLost] {
        for cl in [ClassLoss::Bce, ClassLoss::focal(), ClassLoss::Focal { alpha: 0.25, gamma: 2.0 }] {
            let cfg = SsdConfig::lesson_4x4(20).with_class_loss(cl).with_matching(matching);
            for n_obj in [Some(&n_objects), None] {
                let p = ssd_loss(&out, &bbox, &class, n_obj, 224.0, &anchors, &cfg).unwrap();
                let total = p.total();
                assert!(f64::try_from(&total).unwrap().is_finite(), "{matching:?} {cl:?}: {p:?}");
                total.backward(); // gradients accumulate over the cases; all must stay finite
                assert!(to_vec(&out.box_offsets.grad()).iter().all(|v| v.is_finite()));
                assert!(to_vec(&out.class_logits.grad()).iter().all(|v| v.is_finite()));
            }
        }
    }
    // No objects: all background, loc exactly 0.
    let one =
        SsdOutput { class_logits: out.class_logits.narrow(0, 0, 1), box_offsets: out.box_offsets.narrow(0, 0, 1) };
    let cfg = SsdConfig::lesson_4x4(20);
    let p = ssd_loss(
        &one,
        &bbox.narrow(0, 0, 1),
        &class.narrow(0, 0, 1),
        Some(&n_objects.narrow(0, 0, 1)),
        224.0,
        &anchors,
        &cfg,
    )
    .unwrap();
    assert_eq!(f64::try_from(&p.loc).unwrap(), 0.0);
    let bg =
        class_loss(&out.class_logits.get(0), &Tensor::full([16], 20i64, (Kind::Int64, Device::Cpu)), ClassLoss::Bce);
    assert_eq!(f64::try_from(&p.class).unwrap(), f64::try_from(&bg).unwrap());
    // Identical scores everywhere: finite, deterministic.
    let flat = SsdOutput {
        class_logits: Tensor::zeros([1, 16, 21], (Kind::Float, Device::Cpu)),
        box_offsets: Tensor::zeros([1, 16, 4], (Kind::Float, Device::Cpu)),
    };
    let a = f64::try_from(
        ssd_loss(&flat, &bbox.narrow(0, 1, 1), &class.narrow(0, 1, 1), None, 224.0, &anchors, &cfg).unwrap().total(),
    )
    .unwrap();
    let b = f64::try_from(
        ssd_loss(&flat, &bbox.narrow(0, 1, 1), &class.narrow(0, 1, 1), None, 224.0, &anchors, &cfg).unwrap().total(),
    )
    .unwrap();
    assert!(a.is_finite() && a == b);
    // Errors, not panics: a class out of range, anchors that do not fit.
    let bad = class.narrow(0, 3, 1) + 25;
    assert!(ssd_loss(&one, &bbox.narrow(0, 3, 1), &bad, None, 224.0, &anchors, &cfg).is_err());
    let a189 = Anchors::new(&AnchorConfig::lesson_189(), Device::Cpu);
    let e = ssd_loss(&one, &bbox.narrow(0, 3, 1), &class.narrow(0, 3, 1), None, 224.0, &a189, &cfg).unwrap_err();
    assert!(e.to_string().contains("16 anchors"), "{e}");
    assert!(SsdOutput::unpack(&Tensor::zeros([2, 16, 24], (Kind::Float, Device::Cpu)), 20).is_err());
    // Degenerate boxes in iou: zero union is 0, not NaN.
    let z = Tensor::zeros([2, 4], (Kind::Float, Device::Cpu));
    assert_eq!(to_vec(&iou(&z, &z)), vec![0.0; 4]);
}

// ---------------------------------------------------------------------------------------------
// Heads

#[test]
fn heads_have_the_lessons_shapes_and_names() {
    let _rng = crate::common::torch_rng();
    tch::manual_seed(0);
    let x = Tensor::randn([2, 3, 224, 224], (Kind::Float, Device::Cpu));
    for (cfg, a) in [(SsdConfig::lesson_4x4(20), 16), (SsdConfig::lesson_189(20), 189)] {
        cfg.check(224).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ConvModel::new(&vs, Arch::ResNet34, HeadKind::Ssd(cfg.clone()), 224);
        let typed = tch::no_grad(|| model.forward(&x, false, 0));
        let packed = typed.packed();
        assert_eq!(packed.size(), [2, a, 20 + 1 + 4]); // [B, A, C+1+4]
        let out = typed.ssd("test").unwrap();
        assert_eq!(out.class_logits.size(), [2, a, 21]); // 4x4: 16 anchors; multi: (16+4+1)*9
        assert_eq!(out.box_offsets.size(), [2, a, 4]);
        assert_eq!(to_vec(&out.pack()), to_vec(&packed));
        let vars = vs.variables();
        let head: Vec<&String> = vars.keys().filter(|n| n.starts_with("head.")).collect();
        assert!(head.iter().all(|n| group_of(n) == 2));
        let bias = if a == 16 { "head.out.oconv1.bias" } else { "head.out3.oconv1.bias" };
        let b = to_vec(&vars[bias]);
        assert!(b.iter().all(|&v| v == cfg.bias), "{bias}: {b:?}");
        assert_eq!(b.len() as i64, 21 * cfg.k());
        let expected: &[&str] = if a == 16 {
            &["head.sconv0.conv.weight", "head.sconv2.bn.running_mean", "head.out.oconv2.weight"]
        } else {
            &[
                "head.sconv0.conv.weight",
                "head.sconv1.bn.weight",
                "head.sconv3.conv.bias",
                "head.out1.oconv1.weight",
                "head.out3.oconv2.bias",
            ]
        };
        for n in expected {
            assert!(vars.contains_key(*n), "{n} missing from {head:?}");
        }
        // The head's stages end with the packed output (summary()).
        let feats = tch::no_grad(|| model.body.forward_groups(&x, [false, false]));
        let stages = model.head.stages(&feats, false);
        assert_eq!(stages.last().unwrap().1.size(), [2, a, 25]);
        // Decoding: boxes in 0..1 corners, probabilities in 0..1.
        let d = out.decode(&Anchors::new(&cfg.anchors, Device::Cpu));
        assert_eq!((d.len(), d[0].boxes.size(), d[0].probs.size()), (2, vec![a, 4], vec![a, 21]));
        let (cls, prs) = d[0].best().unwrap();
        assert!(cls.iter().all(|&c| c <= 20) && prs.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert_eq!(d[0].bboxes(224.0).unwrap().len() as i64, a);
    }
    // Configs go through serde (typed configs saved next to results).
    let k = HeadKind::Ssd(SsdConfig::lesson_189(20).with_class_loss(ClassLoss::focal()));
    let back: HeadKind = serde_json::from_str(&serde_json::to_string(&k).unwrap()).unwrap();
    assert_eq!(back, k);
    // Head grids at other sizes, and the check that names them.
    assert_eq!(SsdConfig::lesson_189(20).head_grids(feature_side(128)), vec![2, 1, 1]);
    assert!(SsdConfig::lesson_189(20).check(128).is_err());
}

// ---------------------------------------------------------------------------------------------
// Training sanity

#[test]
fn a_few_steps_lower_the_ssd_loss() {
    let _rng = crate::common::torch_rng();
    // ResNet18 from scratch at sz 128 (features 4x4 -> grids 2, 1, 1), 4 images, each with
    // bright rectangles where its boxes are; Adam on one fixed batch.
    tch::manual_seed(1);
    let sz = 128i64;
    let mut cfg = SsdConfig::lesson_189(3);
    cfg.anchors.grids = cfg.head_grids(feature_side(sz));
    cfg.check(sz).unwrap();
    let boxes: [&[([f32; 4], i64)]; 4] = [
        &[([10., 10., 60., 60.], 0)],
        &[([64., 20., 120., 100.], 1), ([5., 70., 40., 120.], 2)],
        &[([0., 0., 127., 127.], 1)],
        &[([30., 30., 90., 60.], 2), ([70., 80., 110., 120.], 0)],
    ];
    let x = Tensor::randn([4, 3, sz, sz], (Kind::Float, Device::Cpu)) * 0.3;
    let (mut bb, mut cl, mut n) = (vec![0f32; 4 * 2 * 4], vec![0i64; 4 * 2], vec![]);
    for (i, objs) in boxes.iter().enumerate() {
        n.push(objs.len() as i64);
        for (j, (b, c)) in objs.iter().enumerate() {
            let row = i * 2 + 2 - objs.len() + j;
            bb[row * 4..][..4].copy_from_slice(b);
            cl[row] = *c;
            let (t, l, h, w) = (b[0] as i64, b[1] as i64, (b[2] - b[0]) as i64 + 1, (b[3] - b[1]) as i64 + 1);
            let _ = x.get(i as i64).narrow(0, *c, 1).narrow(1, t, h).narrow(2, l, w).fill_(2.0);
        }
    }
    let y = BatchTarget::Boxes {
        bbox: Tensor::from_slice(&bb).view([4, 2, 4]),
        class: Tensor::from_slice(&cl).view([4, 2]),
        n_objects: Tensor::from_slice(&n),
    };
    let model = ssd_model(&cfg, sz as u32);
    let mut opt = nn::Adam::default().build(&model.vs, 1e-3).unwrap();
    let mut losses = vec![];
    for _ in 0..30 {
        let l = model.loss(&model.forward_t(&x, true, 0), &y).unwrap();
        opt.backward_step(&l);
        losses.push(f64::try_from(&l).unwrap());
    }
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    eprintln!("ssd losses: {losses:.3?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(last < 0.5 * first, "loss did not fall clearly: {losses:?}");
}

/// The lesson's matching loses an object when two objects share their best anchor; the fixed
/// one does not. Hand-made: 3 anchors, object 0's best anchor is 1 and so is object 1's.
#[test]
fn the_lesson_matching_loses_an_object_that_shares_its_best_anchor() {
    let _rng = crate::common::torch_rng();
    // overlaps [n_gt = 2, n_anc = 3]: object 0 prefers anchor 1 (0.5), object 1 too (0.6);
    // no other anchor overlaps object 0 by more than 0.4.
    let ov = [0.1, 0.5, 0.0, 0.0, 0.6, 0.45];
    assert_eq!(lost_objects(&ov, 2, 3, Matching::Lesson, 0.4).unwrap(), vec![0]);
    assert_eq!(lost_objects(&ov, 2, 3, Matching::NoGtLost, 0.4).unwrap(), Vec::<usize>::new());
    // Over the bundled sample at 224 with the 4x4 anchors the lesson's rule loses objects,
    // the fixed one loses none of those it can place.
    let ds = fastdet::data::Pascal::open(fastdet::data::sample_root()).unwrap().json("train").unwrap();
    let anchors = Anchors::new(&AnchorConfig::lesson_4x4(), Device::Cpu);
    let all: Vec<usize> = (0..ds.len()).collect();
    let (lost, total, images) = count_lost(&ds, &all, &anchors, 224.0, Matching::Lesson, 0.4).unwrap();
    let (lost_fixed, total2, _) = count_lost(&ds, &all, &anchors, 224.0, Matching::NoGtLost, 0.4).unwrap();
    assert_eq!(total, total2);
    assert_eq!(total, ds.num_objects() - ds.images.iter().flat_map(|r| &r.objects).filter(|o| o.difficult).count());
    assert!(lost > lost_fixed && !images.is_empty(), "lesson {lost}, fixed {lost_fixed} of {total}");
}

/// The receptive field of a corner cell of the 4x4 grid is brightest near that corner (a
/// random ResNet18 SSD, a random image): its centre of mass lies in the corner's quadrant.
#[test]
fn the_receptive_field_of_a_corner_cell_is_near_that_corner() {
    let _rng = crate::common::torch_rng();
    use fastdet::data::{DataOpts, ImageData, Pascal, TargetKind};
    use fastdet::learner::{Learner, LearnerOpts};
    use fastdet::task::TaskParts;
    use fastdet::transforms::{tfms_from_model, CropType, TfmY};
    tch::manual_seed(0);
    let sz = 224;
    let trn = Pascal::open(fastdet::data::sample_root()).unwrap().json("train").unwrap();
    let md = ImageData::from_dataset(
        trn,
        TargetKind::AllBoxes,
        tfms_from_model(sz, vec![], CropType::No, TfmY::Coord).unwrap(),
        DataOpts::new(8, Device::Cpu),
    )
    .unwrap();
    let cfg = SsdConfig::lesson_4x4(20);
    let learn = Learner::new(md, TaskParts::ssd(cfg, sz), LearnerOpts::default().arch(Arch::ResNet18)).unwrap();
    let x = Tensor::randn([3, sz as i64, sz as i64], (tch::Kind::Float, Device::Cpu));
    let centre = |row: usize, col: usize| {
        let heat = fastdet::detect::receptive_field(&learn, &x, 0, row, col).unwrap(); // [sz, sz]
        assert_eq!(heat.size(), vec![sz as i64, sz as i64]);
        assert!((f64::try_from(heat.max()).unwrap() - 1.0).abs() < 1e-6);
        let total = f64::try_from(heat.sum(tch::Kind::Double)).unwrap();
        let ys = Tensor::arange(sz as i64, (tch::Kind::Double, Device::Cpu)).unsqueeze(1);
        let xs = Tensor::arange(sz as i64, (tch::Kind::Double, Device::Cpu)).unsqueeze(0);
        let h = heat.to_kind(tch::Kind::Double);
        (
            f64::try_from((&h * &ys).sum(tch::Kind::Double)).unwrap() / total,
            f64::try_from((&h * &xs).sum(tch::Kind::Double)).unwrap() / total,
        )
    };
    let half = sz as f64 / 2.0;
    let (y, x0) = centre(0, 0);
    assert!(y < half && x0 < half, "top-left cell's field centred at ({y:.0}, {x0:.0})");
    let (y, x1) = centre(3, 3);
    assert!(y > half && x1 > half, "bottom-right cell's field centred at ({y:.0}, {x1:.0})");
    assert!(fastdet::detect::receptive_field(&learn, &x, 0, 4, 0).is_err());
}

// ---------------------------------------------------------------------------------------------
// The batch's matching on the device against the host loop it replaced

/// The matcher fastdet ran on the host, image by image, before the batch's matching moved to the
/// device (`src/loss/ssd.rs` up to issue 21), kept here verbatim as the oracle of
/// [`match_batch`]: `overlaps` `[n_gt, n_anc]` row-major -> each anchor's overlap and ground truth.
fn host_match_anchors(overlaps: &[f32], n_gt: usize, n_anc: usize, matching: Matching) -> (Vec<f32>, Vec<i64>) {
    let at = |g: usize, a: usize| {
        let v = overlaps[g * n_anc + a];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    let mut gt_overlap = vec![0f32; n_anc];
    let mut gt_idx = vec![0i64; n_anc];
    if n_gt == 0 {
        return (gt_overlap, gt_idx);
    }
    for a in 0..n_anc {
        let mut best = 0;
        for g in 1..n_gt {
            if at(g, a) > at(best, a) {
                best = g;
            }
        }
        gt_overlap[a] = at(best, a).max(0.0);
        gt_idx[a] = best as i64;
    }
    let best_anchor = |g: usize, free: &dyn Fn(usize) -> bool| -> Option<usize> {
        let mut best: Option<usize> = None;
        for a in (0..n_anc).filter(|&a| free(a)) {
            if best.is_none_or(|b| at(g, a) > at(g, b)) {
                best = Some(a);
            }
        }
        best
    };
    match matching {
        Matching::Lesson => {
            let prior: Vec<usize> = (0..n_gt).filter_map(|g| best_anchor(g, &|_| true)).collect();
            for &a in &prior {
                gt_overlap[a] = FORCED_OVERLAP;
            }
            for (g, &a) in prior.iter().enumerate() {
                gt_idx[a] = g as i64;
            }
        }
        Matching::NoGtLost => {
            let best_iou: Vec<f32> =
                (0..n_gt).map(|g| (0..n_anc).map(|a| at(g, a)).fold(f32::NEG_INFINITY, f32::max)).collect();
            let mut order: Vec<usize> = (0..n_gt).collect();
            order.sort_by(|&a, &b| best_iou[b].total_cmp(&best_iou[a]).then(a.cmp(&b)));
            let mut taken = vec![false; n_anc];
            for g in order {
                if let Some(a) = best_anchor(g, &|a| !taken[a]) {
                    taken[a] = true;
                    gt_overlap[a] = FORCED_OVERLAP;
                    gt_idx[a] = g as i64;
                }
            }
        }
    }
    (gt_overlap, gt_idx)
}

/// A batch of overlaps `[B, N, A]` with many ties (values from a short list, NaN and -0.0
/// included) and a mask of real rows `[B, N]` (padding anywhere, images without objects).
fn tied_batch() -> impl Strategy<Value = (usize, usize, usize, Vec<f32>, Vec<bool>)> {
    const VALUES: [f32; 9] = [0.0, -0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 1.0, f32::NAN];
    (1usize..5, 0usize..7, 1usize..10).prop_flat_map(|(b, n, a)| {
        (
            Just(b),
            Just(n),
            Just(a),
            proptest::collection::vec(proptest::sample::select(&VALUES[..]), b * n * a),
            proptest::collection::vec(proptest::bool::weighted(0.7), b * n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `match_batch` on a padded batch gives, image by image, the host matcher's answer on the
    /// image's real rows: the same overlaps and the same ground truth (as a row of the batch),
    /// ties included, in both modes; a padding row never wins an anchor.
    #[test]
    fn match_batch_is_the_host_matcher((b, n, a, ov, valid) in tied_batch()) {
        let _rng = crate::common::torch_rng();
        let t = Tensor::from_slice(&ov).view([b as i64, n as i64, a as i64]);
        let v = Tensor::from_slice(&valid).view([b as i64, n as i64]);
        for matching in [Matching::Lesson, Matching::NoGtLost] {
            let (o, i) = match_batch(&t, &v, matching);
            prop_assert_eq!(o.size(), vec![b as i64, a as i64]);
            let o: Vec<f32> = Vec::try_from(o.view([-1])).unwrap();
            let i: Vec<i64> = Vec::try_from(i.view([-1])).unwrap();
            for img in 0..b {
                let rows: Vec<usize> = (0..n).filter(|&r| valid[img * n + r]).collect();
                let real: Vec<f32> =
                    rows.iter().flat_map(|&r| ov[(img * n + r) * a..][..a].iter().copied()).collect();
                let (want_o, want_g) = host_match_anchors(&real, rows.len(), a, matching);
                let want_row: Vec<i64> =
                    want_g.iter().map(|&g| if rows.is_empty() { 0 } else { rows[g as usize] as i64 }).collect();
                prop_assert_eq!(&o[img * a..][..a], &want_o[..], "{:?} image {} overlaps", matching, img);
                prop_assert_eq!(&i[img * a..][..a], &want_row[..], "{:?} image {} rows", matching, img);
            }
        }
    }
}

/// The public one-image matchers are the batch's matching too: `match_anchors` and
/// `map_to_ground_truth` agree with the oracle on random overlaps with ties.
#[test]
fn one_image_matchers_are_the_host_matcher() {
    let _rng = crate::common::torch_rng();
    for seed in 0..50 {
        tch::manual_seed(seed);
        let (n, a) = (1 + seed % 7, 5 + seed % 11);
        let ov = (Tensor::rand([n, a], (Kind::Float, Device::Cpu)) * 4.0).round() / 4.0; // ties
        let v: Vec<f32> = Vec::try_from(ov.view([-1])).unwrap();
        for m in [Matching::Lesson, Matching::NoGtLost] {
            let want = host_match_anchors(&v, n as usize, a as usize, m);
            assert_eq!(match_anchors(&v, n as usize, a as usize, m).unwrap(), want, "seed {seed} {m:?}");
            let (o, i) = map_to_ground_truth(&ov, m).unwrap();
            assert_eq!((Vec::<f32>::try_from(o).unwrap(), Vec::<i64>::try_from(i).unwrap()), want);
        }
    }
}

/// The SSD loss as fastdet computed it before issue 21: image by image, matched on the host
/// ([`host_match_anchors`]), positives picked by index: the oracle of the batched loss.
fn host_ssd_1_loss(
    c: &Tensor,
    bb: &Tensor,
    bbox: &Tensor,
    clas: &Tensor,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> (f64, f64) {
    let (n_gt, n_anc) = (bbox.size()[0], anchors.len() as i64);
    if n_gt == 0 {
        let bg = Tensor::full([n_anc], cfg.n_classes, (Kind::Int64, Device::Cpu));
        return (0.0, f64::try_from(class_loss(c, &bg, cfg.class_loss)).unwrap());
    }
    let v: Vec<f32> = Vec::try_from(iou(bbox, &anchors.corners).flatten(0, -1)).unwrap();
    let (gt_overlap, gt_idx) = host_match_anchors(&v, n_gt as usize, n_anc as usize, cfg.matching);
    let pos: Vec<bool> = gt_overlap.iter().map(|&o| o as f64 > cfg.pos_iou).collect();
    let pos_idx: Vec<i64> = (0..n_anc).filter(|&a| pos[a as usize]).collect();
    let gt_idx = Tensor::from_slice(&gt_idx);
    let neg = Tensor::from_slice(&pos).logical_not();
    let gt_clas = clas.index_select(0, &gt_idx).masked_fill(&neg, cfg.n_classes);
    let loc = if pos_idx.is_empty() {
        0.0
    } else {
        let p = Tensor::from_slice(&pos_idx);
        let a_ic = actn_to_bb(&bb.index_select(0, &p), &anchors.index_select(&p));
        f64::try_from((a_ic - bbox.index_select(0, &gt_idx.index_select(0, &p))).abs().mean(Kind::Float)).unwrap()
    };
    (loc, f64::try_from(class_loss(c, &gt_clas, cfg.class_loss)).unwrap())
}

/// The batched `ssd_loss_per_image` against the host loss on random batches: boxes that share
/// their best anchors, images without objects, both matchings and both class losses.
#[test]
fn batched_ssd_loss_is_the_host_loss() {
    let _rng = crate::common::torch_rng();
    let anchors = Anchors::new(&AnchorConfig::lesson_189(), Device::Cpu);
    for seed in 0..12i64 {
        tch::manual_seed(seed);
        let (b, n) = (4, 1 + seed % 5);
        // Boxes on a coarse grid of 0, 56, .., 224 px so several share a best anchor.
        let lo = (Tensor::randint(4, [b, n, 2], (Kind::Int64, Device::Cpu)) * 56).to_kind(Kind::Float);
        let hw = ((Tensor::randint(3, [b, n, 2], (Kind::Int64, Device::Cpu)) + 1) * 56).to_kind(Kind::Float);
        let bbox = Tensor::cat(&[lo.shallow_clone(), (&lo + hw).clamp_max(224.0)], 2); // [B, N, 4]
        let class = Tensor::randint(20, [b, n], (Kind::Int64, Device::Cpu));
        // Image 0 has no objects; the others 1..=n.
        let counts: Vec<i64> = (0..b).map(|i| if i == 0 { 0 } else { 1 + (seed + i) % n }).collect();
        let n_objects = Tensor::from_slice(&counts);
        let out = SsdOutput {
            class_logits: Tensor::randn([b, 189, 21], (Kind::Float, Device::Cpu)),
            box_offsets: Tensor::randn([b, 189, 4], (Kind::Float, Device::Cpu)),
        };
        for matching in [Matching::Lesson, Matching::NoGtLost] {
            for cl in [ClassLoss::Bce, ClassLoss::focal()] {
                let cfg = SsdConfig::lesson_189(20).with_class_loss(cl).with_matching(matching);
                let parts = fastdet::model::ssd_loss::ssd_loss_per_image(
                    &out,
                    &bbox,
                    &class,
                    Some(&n_objects),
                    224.0,
                    &anchors,
                    &cfg,
                )
                .unwrap();
                for (i, p) in parts.iter().enumerate() {
                    let k = counts[i];
                    let (bb, cc) =
                        (bbox.get(i as i64).narrow(0, n - k, k) / 224.0, class.get(i as i64).narrow(0, n - k, k));
                    let (loc, cls) = host_ssd_1_loss(
                        &out.class_logits.get(i as i64),
                        &out.box_offsets.get(i as i64),
                        &bb,
                        &cc,
                        &anchors,
                        &cfg,
                    );
                    close1(
                        &format!("seed {seed} {matching:?} image {i} loc"),
                        f64::try_from(&p.loc).unwrap(),
                        loc,
                        1e-5,
                    );
                    close1(
                        &format!("seed {seed} {matching:?} image {i} class"),
                        f64::try_from(&p.class).unwrap(),
                        cls,
                        1e-5,
                    );
                }
            }
        }
    }
}

/// A training step's SSD loss reads nothing back from the device (on CUDA each read is a wait
/// for the GPU): the functions on its path hold no host read and no op whose output shape
/// depends on the data (which waits too), and the model's loss uses the anchors it built once
/// (no `Anchors::new`, a host-to-device copy, per step). Read from the source, so that a read
/// added later fails here.
#[test]
fn the_ssd_loss_path_makes_no_host_read() {
    let read = |f: &str| std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap();
    // A function's body up to its closing brace at `indent` (4 for a method).
    let body = |src: &str, name: &str, indent: usize| -> String {
        let start = src.find(&format!("fn {name}(")).unwrap_or_else(|| panic!("no fn {name}"));
        let rest = &src[start..];
        let end = rest.find(&format!("\n{}}}\n", " ".repeat(indent))).expect("end of fn");
        rest[..end].to_string()
    };
    let (loss, model) = (read("src/model/ssd_loss.rs"), read("src/model/mod.rs"));
    let path =
        ["ssd_loss", "ssd_loss_per_image", "ssd_loss_images", "batch_loss", "match_batch", "first_true", "real_rows"]
            .map(|f| (format!("{f} in src/model/ssd_loss.rs"), body(&loss, f, 0)));
    let step = [("Model::loss in src/model/mod.rs".to_string(), body(&model, "loss", 4))];
    for (f, b) in path.iter().chain(&step) {
        assert!(b.len() > 40, "{f}: {b}");
        for read in [
            "try_from",
            "int64_value",
            "double_value",
            "Device::Cpu",
            "nonzero",
            "masked_select",
            "Vec::<",
            "Anchors::new",
        ] {
            assert!(!b.contains(read), "{f} has `{read}`: a host read on the training step's path");
        }
    }
    assert!(step[0].1.contains("ssd_loss::ssd_loss("), "Model::loss calls the lesson's ssd_loss: {}", step[0].1);
}
