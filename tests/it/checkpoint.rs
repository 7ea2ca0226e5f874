//! Checkpoints that know their model: each of the six tasks saved by a learner loads with
//! `Model::load` alone (no data), gives the learner's outputs, and predicts an image from the CLI.

use fastdet::data::{sample_root, DataOpts, ImageData, Pascal};
use fastdet::learner::{Learner, LearnerOpts};
use fastdet::model::Arch;
use fastdet::model::{Model, ModelSpec, Prediction, SPEC_KEY};
use fastdet::nms::NmfOpts;
use fastdet::task::Task;
use fastdet::transforms::{tfms_from_model, CropType, TfmY};
use tch::Device;

const TASKS: [Task; 6] =
    [Task::Classifier, Task::Regression, Task::SingleObject, Task::Multilabel, Task::Ssd, Task::SsdFocal];

fn learner(task: Task, crop: CropType, dir: &std::path::Path) -> Learner {
    let trn = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let tfms = tfms_from_model(64, vec![], crop, TfmY::Coord).unwrap();
    let data = ImageData::from_dataset(trn, task.target(), tfms, DataOpts::new(4, Device::Cpu)).unwrap();
    let opts = LearnerOpts { arch: Arch::ResNet18, weights: None, models_dir: dir.to_path_buf() };
    Learner::for_task(data, task, opts).unwrap()
}

#[test]
fn a_checkpoint_of_each_task_loads_without_data_and_gives_the_learners_outputs() {
    let _rng = crate::common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    for task in TASKS {
        let learn = learner(task, CropType::No, dir.path());
        let path = learn.save(&format!("{task:?}")).unwrap();
        let m = Model::load_on(&path, Device::Cpu).unwrap();
        assert_eq!(m.spec, learn.spec(), "{task:?}");
        assert_eq!(m.spec.classes.len(), 20);
        let batch = learn.data.val_dl.one_batch().unwrap();
        let (a, b) = (learn.predict_batch(&batch.x).packed(), m.predict(&batch.x).packed());
        assert!(a.equal(&b), "{task:?}: the loaded model's outputs differ from the learner's");
        // The spec is one more tensor of the file, readable on its own.
        let file = fastdet::model::checkpoint::read(&path).unwrap();
        assert_eq!(ModelSpec::from_tensors(&file, &path).unwrap().as_ref(), Some(&m.spec));
        assert!(file.contains_key(SPEC_KEY));
    }
}

#[test]
fn what_each_task_predicts_for_one_image_reads_as_its_task() {
    let _rng = crate::common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let image = sample_root().join("VOCdevkit/VOC2007/JPEGImages");
    let image = std::fs::read_dir(&image).unwrap().flatten().map(|e| e.path()).min().unwrap();
    let (w, h) = fastdet::data::open_image(&image).unwrap().dimensions();
    for task in TASKS {
        let path = learner(task, CropType::No, dir.path()).save(&format!("{task:?}")).unwrap();
        let m = Model::load_on(&path, Device::Cpu).unwrap();
        let p = m.predict_file(&image, NmfOpts { thresh: 0.0, ..Default::default() }).unwrap();
        let inside = |b: &fastdet::boxes::BBox| b.top.is_finite() && b.left.is_finite() && b.bottom.is_finite();
        match (task, &p) {
            (Task::Classifier, Prediction::Class { class, prob }) => {
                assert!(m.spec.classes.contains(class) && *prob > 0.0 && *prob <= 1.0)
            }
            (Task::Regression, Prediction::Box { bbox }) => assert!(inside(bbox)),
            (Task::SingleObject, Prediction::ClassBox { bbox, .. }) => {
                // sigmoid * sz, scaled to the image: inside it.
                assert!(
                    bbox.top >= 0.0 && bbox.left >= 0.0 && bbox.bottom <= h as f32 && bbox.right <= w as f32,
                    "{bbox:?}"
                )
            }
            (Task::Multilabel, Prediction::Labels(l)) => assert_eq!(l.len(), 20, "threshold 0 keeps every class"),
            (Task::Ssd | Task::SsdFocal, Prediction::Objects(o)) => assert!(!o.is_empty()),
            _ => panic!("{task:?} predicted {p:?}"),
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastdet"))
            .args(["predict", "--model"])
            .arg(&path)
            .arg("--image")
            .arg(&image)
            .env("FASTDET_DEVICE", "cpu")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{task:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&m.spec.describe()), "{stdout}");
        assert!(stdout.contains(&image.display().to_string()), "{stdout}");
    }
}

#[test]
fn boxes_go_back_to_the_pixels_of_the_original_image() {
    use fastdet::boxes::BBox;
    use fastdet::model::to_original;
    // Squashed: a 640x480 image became 224x224.
    let b = to_original(BBox::new(0.0, 0.0, 223.0, 223.0), CropType::No, 224, (640, 480));
    assert_eq!(b, BBox::new(0.0, 0.0, 479.0, 639.0));
    // Centre crop: 640x480 scaled to 299x224 (short side 224), offset ceil(75 / 2) = 38.
    let b = to_original(BBox::new(0.0, 0.0, 223.0, 223.0), CropType::Center, 224, (640, 480));
    let f = 640.0 / 299.0;
    assert!((b.left - 38.0 * f).abs() < 1e-3 && (b.right - ((223.0 + 38.0 + 1.0) * f - 1.0)).abs() < 1e-3, "{b:?}");
    assert!((b.top - 0.0).abs() < 1e-4 && (b.bottom - 479.0).abs() < 1e-3, "{b:?}");
}

#[test]
fn a_checkpoint_without_a_spec_says_how_to_load_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    tch::Tensor::write_safetensors(&[("w", tch::Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)))], &path).unwrap();
    let err = Model::load_on(&path, Device::Cpu).expect_err("an error").to_string();
    assert!(err.contains("old.safetensors") && err.contains("learn.load"), "{err}");
}

/// `fastdet train` changes an SSD's matching and class loss through `configure_ssd`: the model's
/// one config, which its loss reads and its checkpoints record. Anchors and layers stay.
#[test]
fn an_ssd_config_changed_for_training_is_the_one_its_checkpoint_records() {
    use fastdet::model::ssd::{ClassLoss, Matching};
    use fastdet::model::HeadKind;
    let _rng = crate::common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let mut learn = learner(Task::Ssd, CropType::No, dir.path());
    learn
        .configure_ssd(|cfg| {
            cfg.matching = Matching::NoGtLost;
            cfg.class_loss = ClassLoss::focal();
        })
        .unwrap();
    let trained = learn.model.ssd().unwrap().clone();
    let HeadKind::Ssd(in_the_net) = &learn.model.net.head.kind else { panic!("an SSD head") };
    assert_eq!(in_the_net, &trained);
    let spec = Model::load_on(learn.save("ssd").unwrap(), Device::Cpu).unwrap().spec;
    let HeadKind::Ssd(recorded) = &spec.head else { panic!("an SSD head") };
    assert_eq!(recorded, &trained);
    assert_eq!((recorded.matching, recorded.class_loss), (Matching::NoGtLost, ClassLoss::focal()));
    assert_eq!(spec, learn.spec());
    // The anchors and the layers belong to the model: changing them is refused, nothing changes.
    let err = learn.configure_ssd(|cfg| cfg.n_classes = 3).unwrap_err().to_string();
    assert!(err.contains("new model"), "{err}");
    assert_eq!(learn.model.ssd(), Some(&trained));
}
