//! Per-image losses and top losses: the parts add up to what training minimises, the order is
//! the loss order, and on a trained-for-a-moment learner the per-image losses average to the
//! validation loss. Also where the outcome marks of ground truth beside prediction land.

use fastdet::boxes::BBox;
use fastdet::data::{sample_root, BatchTarget, DataOpts, ImageData, Pascal, TargetKind};
use fastdet::interpret::{rank, Interpretation};
use fastdet::learner::{Learner, LearnerOpts};
use fastdet::metrics::{confusion, Detection};
use fastdet::model::ssd::{SsdConfig, SsdOutput};
use fastdet::model::{Arch, HeadKind, Loss, Model, ModelOutput, ModelSpec};
use fastdet::show::mistakes::{RIGHT, WRONG, WRONG_CLASS};
use fastdet::show::show_image_errors;
use fastdet::task::{Task, TaskParts};
use fastdet::transforms::{tfms_from_model, CropType, TfmY};
use tch::{Device, Kind, Tensor};

/// libtorch's random generator is global: build learners one at a time.
use crate::common::TORCH_RNG as LEARNERS;

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{what}: {a} vs {b}");
}

#[test]
fn per_image_parts_add_up_to_the_loss() {
    let _rng = crate::common::seed(1);
    let b = 5;
    let c = 4;
    let class = Tensor::from_slice(&[0i64, 3, 1, 2, 3]);
    let bbox = Tensor::rand([b, 4], (Kind::Float, Device::Cpu)) * 100.0;
    let multi = Tensor::rand([b, c], (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
    let cases: Vec<(Loss, ModelOutput, BatchTarget)> = vec![
        (
            Loss::CrossEntropy,
            ModelOutput::Logits(Tensor::randn([b, c], (Kind::Float, Device::Cpu))),
            BatchTarget::Class(class.shallow_clone()),
        ),
        (
            Loss::L1,
            ModelOutput::Box(Tensor::randn([b, 4], (Kind::Float, Device::Cpu)) * 50.0),
            BatchTarget::Box(bbox.shallow_clone()),
        ),
        (
            Loss::Bce,
            ModelOutput::Logits(Tensor::randn([b, c], (Kind::Float, Device::Cpu))),
            BatchTarget::MultiLabel(multi),
        ),
        (
            Loss::detn(128.0),
            ModelOutput::single_from_packed(&Tensor::randn([b, 4 + c], (Kind::Float, Device::Cpu))),
            BatchTarget::BoxClass { bbox: bbox.shallow_clone(), class: class.shallow_clone() },
        ),
    ];
    for (loss, out, y) in cases {
        let per = loss.per_image(&out, &y).unwrap();
        assert_eq!(per.len(), b as usize);
        assert!(per.iter().all(|p| p.len() == loss.part_names().len()));
        let mean: f64 = per.iter().map(|p| p.iter().sum::<f64>()).sum::<f64>() / b as f64;
        close(mean, f64::try_from(loss.compute(&out, &y).unwrap()).unwrap(), &format!("{loss:?}"));
    }
    // The SSD sums its images (as the lesson's ssd_loss does); its model holds the anchors.
    let cfg = SsdConfig::lesson_4x4(c);
    let names = (0..c).map(|k| format!("c{k}")).collect();
    let spec = ModelSpec::new(TargetKind::AllBoxes, names, 224, Arch::ResNet18, HeadKind::Ssd(cfg), Loss::Ssd {});
    let model = Model::new(spec, Device::Cpu);
    let out =
        ModelOutput::Ssd(SsdOutput::unpack(&Tensor::randn([2, 16, c + 1 + 4], (Kind::Float, Device::Cpu)), c).unwrap());
    let y = BatchTarget::Boxes {
        bbox: Tensor::from_slice(&[0f32, 0., 0., 0., 10., 20., 100., 120., 50., 60., 200., 220., 0., 0., 100., 100.])
            .view([2, 2, 4]),
        class: Tensor::from_slice(&[0i64, 2, 1, 3]).view([2, 2]),
        n_objects: Tensor::from_slice(&[1i64, 2]),
    };
    let per = model.loss_per_image(&out, &y).unwrap();
    assert_eq!(model.spec.loss.part_names(), vec!["loc", "class"]);
    let sum: f64 = per.iter().flatten().sum();
    close(sum, f64::try_from(model.loss(&out, &y).unwrap()).unwrap(), "ssd");
}

#[test]
fn rank_orders_by_loss_with_ties_in_order() {
    let v = [1.0, 5.0, 3.0, 5.0, 0.5];
    assert_eq!(rank(&v, 3, true), vec![1, 3, 2]);
    assert_eq!(rank(&v, 2, false), vec![4, 0]);
    assert_eq!(rank(&v, 10, true).len(), 5);
}

#[test]
fn a_classifiers_top_losses_average_to_its_validation_loss() {
    let _g = LEARNERS.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let trn = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let data = ImageData::from_dataset(
        trn,
        Task::Classifier.target(),
        tfms_from_model(32, vec![], CropType::No, TfmY::None).unwrap(),
        DataOpts::new(4, Device::Cpu),
    )
    .unwrap();
    let mut learn = Learner::for_task(data, Task::Classifier, LearnerOpts::default().arch(Arch::ResNet18)).unwrap();
    // What fit returns shows, as one HTML output, the table, the curves and 4 validation images.
    let report = learn.fit(1e-3, 1, fastdet::learner::FitOpts::cycle_len(1)).unwrap();
    let preview = report.preview.as_ref().expect("a preview after the fit");
    assert_eq!(preview.lock().unwrap().batch.indices, learn.data.val_dl.dataset.indices[..4].to_vec());
    let html = report.to_html();
    assert_eq!(html.matches("<img").count(), 2, "curves and preview");
    assert!(html.contains("time") && html.contains("val_loss"), "the epoch table with its time column");
    let interp = Interpretation::from_learner(&learn).unwrap();
    assert_eq!(interp.len(), learn.data.val_dl.dataset.len());
    let mean = (0..interp.len()).map(|i| interp.total(i)).sum::<f64>() / interp.len() as f64;
    close(mean, learn.validate(&learn.data.val_dl).unwrap().0, "mean per-image loss vs validate");
    let top = interp.top_losses(4);
    assert!(top.windows(2).all(|w| interp.total(w[0]) >= interp.total(w[1])));
    assert!(interp.total(top[0]) >= (0..interp.len()).map(|i| interp.total(i)).fold(f64::MIN, f64::max));
    let least = interp.least_losses(2);
    assert!(interp.total(least[0]) <= interp.total(top[3]));
    let fig = interp.plot_top_losses(4).unwrap();
    assert!(fig.to_png().is_ok());
    assert!(interp.caption(top[0]).starts_with("loss "));
}

#[test]
fn an_ssds_interpretation_and_confusion() {
    let _g = LEARNERS.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let sz = 64;
    let trn = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let n_classes = trn.classes.len() as i64;
    let data = ImageData::from_dataset(
        trn,
        TargetKind::AllBoxes,
        tfms_from_model(sz, vec![], CropType::No, TfmY::Coord).unwrap(),
        DataOpts::new(4, Device::Cpu),
    )
    .unwrap();
    let cfg = SsdConfig::lesson_189(n_classes).fitted_to(sz);
    let learn = Learner::new(data, TaskParts::ssd(cfg, sz), LearnerOpts::default().arch(Arch::ResNet18)).unwrap();
    let interp = Interpretation::from_learner(&learn).unwrap();
    // validate() weighs each batch's ssd_loss (a sum over its images) by the batch's size.
    let (val, _) = learn.validate(&learn.data.val_dl).unwrap();
    let dl = &learn.data.val_dl;
    let order = dl.order(0);
    let mut want = 0.0;
    let mut pos = 0;
    for chunk in dl.batches(&order) {
        let s: f64 = (pos..pos + chunk.len()).map(|i| interp.total(i)).sum();
        want += s * chunk.len() as f64;
        pos += chunk.len();
    }
    close(want / interp.len() as f64, val, "per-image SSD losses vs validate");
    assert_eq!(interp.part_names, vec!["loc", "class"]);
    let dets = interp.detections(fastdet::nms::NmfOpts::default()).unwrap();
    let cm = interp.confusion(0.0).unwrap();
    let gt = interp.ground_truth();
    let n_obj = gt.images.iter().flat_map(|r| &r.objects).filter(|o| !o.difficult).count();
    let rows: usize = cm.matrix[..gt.classes.len()].iter().flatten().sum();
    assert_eq!(rows, n_obj, "every object is found, confused or missed");
    assert_eq!(cm.images.iter().map(|e| e.dets.len()).sum::<usize>(), dets.len());
    assert!(interp.plot_top_losses(3).unwrap().to_png().is_ok());
}

/// On a real image: a detection on the first object with its class, one on the second with
/// another class, the third object left: the marks are green, orange and red on those objects.
#[test]
fn outcome_marks_sit_on_their_objects() {
    let ds = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    // An image whose objects (3 or more) do not touch, so each mark is on one object only.
    let disjoint = |i: usize| {
        let o = &ds.images[i].objects;
        o.len() >= 3
            && o.iter().all(|a| !a.difficult)
            && (0..o.len()).all(|a| (a + 1..o.len()).all(|b| o[a].bbox.pixel_iou(&o[b].bbox) == 0.0))
    };
    let i = (0..ds.len()).find(|&i| disjoint(i)).expect("the sample has images with 3 separate objects");
    let rec = &ds.images[i];
    let o = &rec.objects;
    let other = (o[1].class + 1) % ds.classes.len();
    let dets = [
        Detection { image_id: rec.id, class: o[0].class, bbox: o[0].bbox, score: 0.9 },
        Detection { image_id: rec.id, class: other, bbox: o[1].bbox, score: 0.8 },
    ];
    let cm = confusion(&ds, &dets, 0.0).unwrap();
    let e = &cm.images[i];
    let cell = 224u32;
    let fig = show_image_errors(&ds, &[e], &["caption".into()], cell).unwrap();
    let c = fig.image();
    let scale = (cell as f32 / rec.width as f32).min(cell as f32 / rec.height as f32);
    let (ox, oy) = ((cell as f32 - rec.width as f32 * scale) / 2.0, (cell as f32 - rec.height as f32 * scale) / 2.0);
    // Is `color` on the left edge of `b` (within 2 px), at a third of its height, in panel p?
    let on_edge = |p: u32, b: BBox, color: fastdet::draw::Color| {
        let x0 = 6.0 + p as f32 * (cell as f32 + 6.0) + ox + b.left * scale;
        let y = 6.0 + oy + (b.top + (b.bottom - b.top) * 0.66) * scale;
        (-2..=2).any(|dx| {
            let px = c.get_pixel((x0 as i32 + dx).max(0) as u32, y as u32);
            px.0 == [color.0, color.1, color.2]
        })
    };
    // Ground truth (panel 0): found, found with another class, missed (if not overlapped).
    assert!(on_edge(0, o[0].bbox, RIGHT), "object 0 found: green");
    assert!(on_edge(0, o[1].bbox, WRONG_CLASS), "object 1 as another class: orange");
    assert!(e.missed.contains(&2));
    assert!(on_edge(0, o[2].bbox, WRONG), "object 2 missed: red");
    // Prediction (panel 1): the true positive green, the wrong class orange.
    assert!(on_edge(1, o[0].bbox, RIGHT));
    assert!(on_edge(1, o[1].bbox, WRONG_CLASS));
}
