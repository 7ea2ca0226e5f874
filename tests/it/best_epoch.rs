//! Issue 22, part 4: the SSD's mAP in the epoch table, keeping the best epoch, stopping early,
//! and `fastdet train --resume` continuing a stage killed mid-way.

use fastdet::data::{sample_root, DataOpts, ImageData, Pascal};
use fastdet::learner::{BestEpoch, Callback, EpochRow, FitOpts, Flow, Learner, LearnerOpts, BEST_DIR};
use fastdet::metrics::{evaluate, ApMetric};
use fastdet::model::Arch;
use fastdet::nms::NmfOpts;
use fastdet::task::Task;
use fastdet::transforms::{tfms_from_model, CropType, TfmY};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tch::{Device, Tensor};

/// A learner of `task` on the bundled sample (train split, the lesson's 20% validation), ResNet18
/// with random weights, seeded, every group trainable.
fn learner(task: Task, sz: u32, bs: usize) -> (std::sync::MutexGuard<'static, ()>, Learner) {
    let guard = crate::common::seed(0);
    let trn = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let tfms = tfms_from_model(sz, vec![], CropType::No, TfmY::Coord).unwrap();
    let data = ImageData::from_dataset(trn, task.target(), tfms, DataOpts::new(bs, Device::Cpu)).unwrap();
    let opts = LearnerOpts { arch: Arch::ResNet18, weights: None, models_dir: tempfile::tempdir().unwrap().keep() };
    let mut l = Learner::for_task(data, task, opts).unwrap();
    l.unfreeze();
    (guard, l)
}

/// Named variables, sorted by name.
type Weights = Vec<(String, Tensor)>;

/// Every variable of a learner, copied, by name.
fn weights(l: &Learner) -> Weights {
    let mut v: Weights = l.model.vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A user's callback: the weights after every epoch.
#[derive(Clone, Default)]
struct EpochWeights(Arc<Mutex<Vec<Weights>>>);

impl Callback for EpochWeights {
    fn after_epoch(&mut self, learn: &mut Learner, _row: &EpochRow) -> fastdet::error::Result<Flow> {
        self.0.lock().unwrap().push(weights(learn));
        Ok(Flow::Continue)
    }
}

fn read_best(models_dir: &Path) -> BestEpoch {
    let text = std::fs::read_to_string(models_dir.join(BEST_DIR).join("best.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The SSD's epoch table has a `map` column: the VOC07 mAP of the evaluator on the validation
/// split after NMS with `NmfOpts::evaluation()`; what it costs per epoch is printed.
#[test]
fn the_ssd_epoch_table_has_the_evaluators_map() {
    let (_rng, mut l) = learner(Task::Ssd, 32, 8);
    assert_eq!(l.recorder.metric_names, ["map"]);
    let r = l.fit(1e-3, 1, FitOpts::cycle_len(2).keep_best("map")).unwrap();
    assert_eq!(r.epochs.len(), 2);
    let val_gt = l.data.val_dl.dataset.data.subset(&l.data.val_dl.dataset.indices);
    let dets = fastdet::detect::detections(&l, &l.data.val_dl, NmfOpts::evaluation()).unwrap();
    let map = evaluate(&val_gt, &dets, ApMetric::Voc07).unwrap().map;
    assert_eq!(r.epochs[1].metrics, vec![map], "the table's map is the evaluator's");
    assert!(dets.iter().all(|d| d.score > 0.01), "the low evaluation threshold");
    let (secs, again) = fastdet::detect::map_cost(&l).unwrap();
    assert_eq!(again, map);
    let epoch_secs: f64 = r.epochs.iter().map(|e| e.secs).sum::<f64>() / 2.0;
    eprintln!(
        "map of {} validation images: {:.1} ms per epoch (decoding, NMS, scoring), of {:.2} s per epoch; {} detections",
        val_gt.len(),
        secs * 1e3,
        epoch_secs,
        dets.len()
    );
    // keep_best("map"): the best epoch by map, higher is better.
    let best = *r.best.clone().unwrap();
    assert!(best.higher_is_better && best.column == "map");
    let want = if r.epochs[1].metrics[0] > r.epochs[0].metrics[0] { 1 } else { 0 };
    assert_eq!(best.epoch, want, "{:?}", r.epochs);
    assert_eq!(read_best(l.models_dir()), best);
    // A metric the learner cannot compute: map of a learner that is not an SSD.
    use fastdet::data::TargetKind;
    use fastdet::model::{HeadKind, Loss, Model, ModelSpec};
    let names = vec!["a".to_string(), "b".to_string()];
    let spec = ModelSpec::new(
        TargetKind::LargestClass,
        names,
        64,
        Arch::ResNet18,
        HeadKind::classifier(2),
        Loss::CrossEntropy,
    );
    let classifier = Model::new(spec, Device::Cpu);
    let e = fastdet::metrics::WholeSetMetrics::new(&[fastdet::metrics::Metric::Map], &classifier)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("SSD"), "{e}");
}

/// keep_best("val_loss"): `best/` holds the weights of the epoch with the lowest validation loss
/// (one weights file, loadable on its own), `best.json` says which, and the report says where.
#[test]
fn keep_best_saves_the_lowest_val_loss_epoch_and_the_report_says_where() {
    let (_rng, mut l) = learner(Task::SingleObject, 32, 8);
    // Nothing kept yet: load_best says which file it looked for.
    let e = l.load_best().unwrap_err().to_string();
    assert!(e.contains(&l.models_dir().join(BEST_DIR).join("best.json").display().to_string()), "{e}");
    let seen = EpochWeights::default();
    l.add_callback(seen.clone());
    let r = l.fit(3e-3, 1, FitOpts::cycle_len(4).keep_best("val_loss")).unwrap();
    l.clear_callbacks();
    let losses: Vec<f64> = r.epochs.iter().map(|e| e.val_loss).collect();
    let argmin = (0..losses.len()).min_by(|&a, &b| losses[a].total_cmp(&losses[b])).unwrap();
    let best = *r.best.clone().unwrap();
    assert_eq!((best.epoch, best.value, best.higher_is_better), (argmin, losses[argmin], false), "{losses:?}");
    assert_eq!(best.epochs_done, argmin + 1);
    let file = best.weights.clone().unwrap();
    assert_eq!(file, l.models_dir().join(BEST_DIR).join(format!("weights-{}.safetensors", argmin + 1)));
    assert_eq!(read_best(l.models_dir()), best);
    let files: Vec<String> = std::fs::read_dir(l.models_dir().join(BEST_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "best.json and one weights file, no temporary file: {files:?}");
    // The file holds that epoch's weights, and loads on its own.
    let at_best = &seen.0.lock().unwrap()[argmin];
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&file).unwrap().into_iter().collect();
    for (name, t) in at_best {
        assert!(saved[name].equal(t), "{name} differs from epoch {argmin}'s");
    }
    fastdet::model::Model::load(&file).unwrap();
    // load_best puts that epoch's weights back in the learner (it ends with the last epoch's).
    assert_eq!(l.load_best().unwrap(), best);
    for ((name, t), (_, now)) in at_best.iter().zip(&weights(&l)) {
        assert!(now.equal(t), "{name}: load_best did not restore epoch {argmin}'s weights");
    }
    let shown = format!("{}\n{}", r.table(), r.summary());
    assert!(shown.contains(&format!("best epoch {argmin} by val_loss")) && shown.contains(&file.display().to_string()));
    // A column the table does not have is an error that lists the ones it has.
    let e = l.fit(1e-3, 1, FitOpts::default().keep_best("map")).unwrap_err().to_string();
    assert!(e.contains("\"map\"") && e.contains("detn_acc") && e.contains("val_loss"), "{e}");
}

/// early_stop(patience, min_epochs): the fit ends after `patience` epochs in a row without a
/// new best, not before `min_epochs`; it is complete (not an interruption) and `last/` offers
/// nothing to resume. The expected stop is worked out from the table itself.
#[test]
fn early_stop_after_patience_epochs_without_improvement() {
    let (_rng, mut l) = learner(Task::SingleObject, 32, 8);
    let (n, patience, min_epochs) = (8, 1, 3);
    let r = l.fit(3e-2, 1, FitOpts::cycle_len(n).keep_best("detn_acc").early_stop(patience, min_epochs)).unwrap();
    let acc: Vec<f64> = r.epochs.iter().map(|e| e.metrics[0]).collect();
    // The rule, on the rows trained: a new best resets the count.
    let mut best = f64::NEG_INFINITY;
    let mut since = 0;
    let mut expected_stop = None;
    for (i, &a) in acc.iter().enumerate() {
        if a > best {
            best = a;
            since = 0;
        } else {
            since += 1;
        }
        if since >= patience && i + 1 >= min_epochs && i + 1 < n {
            expected_stop = Some(i);
            break;
        }
    }
    assert!(r.stopped.is_none(), "an early stop is not an interruption");
    match expected_stop {
        Some(i) => {
            assert_eq!(r.epochs.len(), i + 1, "{acc:?}");
            let why = r.early_stop.clone().unwrap();
            assert!(why.contains(&format!("after epoch {i}")) && why.contains("detn_acc"), "{why}");
        }
        None => assert_eq!((r.epochs.len(), r.early_stop.clone()), (n, None), "{acc:?}"),
    }
    assert!(r.epochs.len() >= min_epochs);
    eprintln!("detn_acc by epoch {acc:?}: {:?}", r.early_stop);
    let data = l.data.clone();
    let dir = l.models_dir().to_path_buf();
    drop(l);
    let mut back = Learner::restore_last(data, &dir).unwrap();
    assert_eq!(back.epochs_done(), r.epochs.len());
    assert!(back.resume_fit().is_err(), "a fit that stopped early is finished");
}
