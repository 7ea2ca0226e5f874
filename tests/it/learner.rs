//! The learner: freezing, overfitting a batch, checkpoints, NaN handling.

use fastdet::data::{sample_root, DataOpts, ImageData, Pascal};
use fastdet::learner::{FitOpts, Learner, LearnerOpts};
use fastdet::model::Arch;
use fastdet::task::Task;
use fastdet::transforms::{tfms_from_model, CropType, TfmY};
use tch::{Device, Tensor};

/// Tests of this file build their learners one at a time: libtorch's random generator is
/// global, and a fit running in another test thread would change the initial weights.
use crate::common::TORCH_RNG as SEQUENTIAL;

fn learner(sz: u32, bs: usize) -> (std::sync::MutexGuard<'static, ()>, Learner) {
    let guard = SEQUENTIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let trn = Pascal::open(sample_root()).unwrap().json("train").unwrap();
    let tfms = tfms_from_model(sz, vec![], CropType::No, TfmY::Coord).unwrap();
    let data = ImageData::from_dataset(trn, Task::SingleObject.target(), tfms, DataOpts::new(bs, Device::Cpu)).unwrap();
    let opts = LearnerOpts { arch: Arch::ResNet18, weights: None, models_dir: tempfile::tempdir().unwrap().keep() };
    (guard, Learner::for_task(data, Task::SingleObject, opts).unwrap())
}

fn values(l: &Learner, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = l
        .model
        .vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn max_change(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    a.iter().zip(b).map(|((_, x), (_, y))| f64::try_from((x - y).abs().max()).unwrap()).fold(0.0, f64::max)
}

#[test]
fn new_learner_is_frozen_up_to_the_head_and_fit_moves_only_the_head() {
    let (_seq, mut l) = learner(64, 8);
    assert_eq!(l.frozen_to(), 2);
    let body = values(&l, "layer");
    let stem_bn = values(&l, "bn1.running");
    let head = values(&l, "head.");
    l.fit(1e-3, 1, FitOpts::default()).unwrap();
    assert_eq!(max_change(&body, &values(&l, "layer")), 0.0, "frozen weights changed");
    assert_eq!(max_change(&stem_bn, &values(&l, "bn1.running")), 0.0, "frozen BatchNorm statistics changed");
    assert!(max_change(&head, &values(&l, "head.")) > 0.0, "the head did not train");

    l.freeze_to(-2); // layer3, layer4 and the head train
    let early = values(&l, "layer1.");
    let late = values(&l, "layer4.");
    l.fit(1e-3, 1, FitOpts::default()).unwrap();
    assert_eq!(max_change(&early, &values(&l, "layer1.")), 0.0);
    assert!(max_change(&late, &values(&l, "layer4.")) > 0.0);
}

#[test]
fn overfits_a_small_batch() {
    let (_seq, mut l) = learner(64, 4);
    l.unfreeze();
    let batch = l.data.trn_dl.one_batch().unwrap();
    let mut opt = {
        use tch::nn::OptimizerConfig;
        tch::nn::Adam::default().build(&l.model.vs, 1e-3).unwrap()
    };
    let loss_of =
        |l: &Learner| f64::try_from(l.model.loss(&l.model.forward_t(&batch.x, true, 0), &batch.y).unwrap()).unwrap();
    let first = loss_of(&l);
    for _ in 0..80 {
        let loss = l.model.loss(&l.model.forward_t(&batch.x, true, 0), &batch.y).unwrap();
        opt.backward_step(&loss);
    }
    let last = loss_of(&l);
    assert!(last < first * 0.3, "detection loss went from {first} to {last}");
}

#[test]
fn save_load_round_trip_and_corrupt_checkpoint() {
    let (_seq, mut l) = learner(64, 4);
    let x = l.data.val_dl.one_batch().unwrap().x;
    let before = l.predict_batch(&x).packed();
    let path = l.save("ckpt").unwrap();
    assert!(path.exists());
    l.unfreeze();
    l.fit(1e-2, 1, FitOpts::default()).unwrap();
    assert!(f64::try_from((l.predict_batch(&x).packed() - &before).abs().max()).unwrap() > 0.0);
    l.load("ckpt").unwrap();
    assert_eq!(f64::try_from((l.predict_batch(&x).packed() - &before).abs().max()).unwrap(), 0.0);

    // A checkpoint in fp16 (as fastdet ships weights) loads into the fp32 variables.
    let half: Vec<(String, Tensor)> =
        l.model.vs.variables().into_iter().map(|(n, t)| (n, t.to_kind(tch::Kind::Half))).collect();
    Tensor::write_safetensors(&half, l.models_dir().join("half.safetensors")).unwrap();
    l.load("half").unwrap();
    assert!(l.model.vs.variables().values().all(|t| t.kind() == tch::Kind::Float));
    assert!(f64::try_from((l.predict_batch(&x).packed() - &before).abs().max()).unwrap() < 0.05);

    std::fs::write(l.models_dir().join("bad.safetensors"), b"not a checkpoint").unwrap();
    let e = l.load("bad").unwrap_err().to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
    let e = l.load("missing").unwrap_err().to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
}

#[test]
fn nan_loss_stops_with_the_epoch_and_batch_and_restores_weights() {
    let (_seq, mut l) = learner(64, 8);
    l.unfreeze();
    let before = values(&l, "head.");
    assert!(l.fit(f64::NAN, 1, FitOpts::default()).is_err());
    let e = l.fit(1e20, 1, FitOpts::default()).unwrap_err().to_string();
    assert!(e.contains("epoch 0, batch"), "{e}");
    assert_eq!(max_change(&before, &values(&l, "head.")), 0.0);
}

#[test]
fn lr_find_restores_the_weights() {
    let (_seq, mut l) = learner(64, 4);
    let before = values(&l, "");
    let found = l.lr_find(1e-5, 10.0).unwrap();
    assert!(!found.lrs.is_empty());
    assert!(found.lrs.windows(2).all(|w| w[1] > w[0]));
    assert_eq!(max_change(&before, &values(&l, "")), 0.0);
    assert!(found.plot().unwrap().to_png().is_ok());
}

#[test]
fn summary_shows_the_cut_and_flatten() {
    let sz = 224;
    let (_seq, l) = learner(sz, 4);
    let s = l.summary();
    let text = s.to_string();
    let layer4 = s.rows.iter().find(|r| r.0 == "layer4").unwrap();
    assert_eq!(layer4.1, vec![2, 512, 7, 7]);
    let flatten = s.rows.iter().find(|r| r.0 == "head Flatten").unwrap();
    assert_eq!(flatten.1, vec![2, 25088]);
    assert_eq!(s.rows.last().unwrap().1, vec![2, 24]);
    // ResNet18 has 11,176,512 parameters without its fc layer.
    let body: i64 = s.rows.iter().filter(|r| !r.0.starts_with("head")).map(|r| r.2).sum();
    assert_eq!(body, 11_176_512, "{text}");
}

/// A NaN in validation (here: BatchNorm running statistics made NaN before the fit) is an error
/// naming the epoch, like a NaN training loss, and the weights go back to the epoch's start.
#[test]
fn nan_in_validation_is_an_error_and_restores_weights() {
    let (_seq, mut l) = learner(32, 8);
    tch::no_grad(|| {
        let mut v = l.model.vs.variables()["head.bn.running_var"].shallow_clone();
        let _ = v.fill_(f64::NAN);
    });
    let before = values(&l, "head.");
    let e = l.fit(1e-3, 1, FitOpts::default()).unwrap_err().to_string();
    assert!(e.contains("validation loss is NaN at epoch 0"), "{e}");
    assert_eq!(l.epochs_done(), 0);
    let after = values(&l, "head.");
    for ((n, a), (_, b)) in before.iter().zip(&after) {
        assert!(a.equal_nan(b), "{n} changed");
    }
}

trait EqualNan {
    fn equal_nan(&self, other: &Tensor) -> bool;
}
impl EqualNan for Tensor {
    fn equal_nan(&self, other: &Tensor) -> bool {
        self.allclose(other, 0.0, 0.0, true)
    }
}

/// A fit in the background: progress while it runs, stop after a batch, the learner back with
/// what it learnt, then a fit with another learning rate continues from there.
#[test]
fn background_fit_stops_and_continues() {
    let (_seq, l) = learner(32, 4);
    let dir = l.models_dir().to_path_buf();
    let h = l.fit_background(1e-3, 50, FitOpts::default());
    let t = std::time::Instant::now();
    while h.progress().losses.len() < 3 {
        assert!(t.elapsed().as_secs() < 120 && h.is_running(), "no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    h.stop();
    let (mut l, report) = h.join().unwrap();
    let report = report.unwrap();
    let stopped = report.stopped.expect("stopped");
    assert!(report.epochs.len() < 50 && stopped.epoch == report.epochs.len());
    assert_eq!(l.epochs_done(), report.epochs.len());
    assert!(report.losses.len() >= 3);
    let done = l.epochs_done();
    let again = l.fit(1e-4, 1, FitOpts::default()).unwrap();
    assert!(again.stopped.is_none() && again.epochs.len() == 1);
    assert_eq!(l.epochs_done(), done + 1);
    assert!(dir.join("last/state.json").is_file());
}

/// After every epoch the state goes to models_dir/last; restore_last rebuilds the learner from
/// it (weights, epoch count, freezing, recorder) and resume_fit finishes an unfinished fit.
#[test]
fn restore_last_after_a_kill_and_resume_the_fit() {
    let (_seq, mut l) = learner(32, 8);
    l.freeze_to(-2);
    l.fit(1e-3, 1, FitOpts::default()).unwrap();
    // A 3-epoch fit "killed" after its first epoch: stop it once that epoch's state is written.
    std::fs::remove_dir_all(l.models_dir().join("last")).unwrap();
    let stop = l.stop_flag();
    let plan_epochs = FitOpts::cycle_len(3);
    let t = std::thread::spawn({
        let dir = l.models_dir().to_path_buf();
        move || {
            let t = std::time::Instant::now();
            while !dir.join("last/state.json").is_file() {
                assert!(t.elapsed().as_secs() < 300);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            stop.request();
        }
    });
    let r = l.fit(1e-3, 1, plan_epochs).unwrap();
    t.join().unwrap();
    assert!(r.stopped.is_some(), "{:?}", r.epochs);
    let saved_epochs = 1 + r.epochs.len();
    let file = std::fs::read_dir(l.models_dir().join("last"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&file).unwrap().into_iter().collect();
    let data = l.data.clone();
    let dir = l.models_dir().to_path_buf();
    drop(l);
    let mut back = Learner::restore_last(data, &dir).unwrap();
    assert_eq!(back.epochs_done(), saved_epochs);
    assert_eq!(back.frozen_to(), 1);
    assert_eq!(back.recorder.epochs.len(), saved_epochs);
    for (name, t) in back.model.vs.variables() {
        assert!(t.equal(&saved[&name]), "{name} differs from {}", file.display());
    }
    let rest = back.resume_fit().unwrap();
    assert_eq!(rest.epochs.len(), 3 - (saved_epochs - 1));
    assert_eq!(back.epochs_done(), 4);
    assert!(back.resume_fit().is_err(), "nothing left to resume");
}

/// checkpoint/restore: try a learning rate, then go back.
#[test]
fn checkpoint_and_restore_in_memory() {
    let (_seq, mut l) = learner(32, 8);
    let ck = l.checkpoint();
    let before = values(&l, "");
    l.fit(1e-2, 1, FitOpts::default()).unwrap();
    assert!(max_change(&before, &values(&l, "")) > 0.0);
    l.restore(&ck).unwrap();
    assert_eq!(max_change(&before, &values(&l, "")), 0.0);
    assert_eq!((l.epochs_done(), l.recorder.epochs.len()), (0, 0));
}

/// The lessons' custom heads keep PyTorch's default initialisation (weights and biases uniform in
/// +-1/sqrt(fan_in)); fastai initialises only its default head (Kaiming normal, zero bias).
#[test]
fn heads_are_initialised_as_pytorch_and_fastai_do() {
    // Initialisation draws from libtorch's one global generator: not while another test trains.
    let _seq = SEQUENTIAL.lock().unwrap_or_else(|e| e.into_inner());
    use fastdet::model::ssd::SsdConfig;
    use fastdet::model::{ConvModel, HeadKind};
    tch::manual_seed(0);
    let stats = |t: &Tensor| (f64::try_from(t.abs().max()).unwrap(), f64::try_from(t.std(true)).unwrap(), t.numel());
    let check_uniform = |vs: &tch::nn::VarStore, name: &str, fan_in: i64| {
        let t = &vs.variables()[name];
        let (max, std, n) = stats(t);
        let bound = 1.0 / (fan_in as f64).sqrt();
        assert!(max <= bound * (1.0 + 1e-6), "{name}: max {max} over the bound {bound}");
        if n >= 1000 {
            let want = bound / 3f64.sqrt(); // std of U(-b, b)
            assert!((std / want - 1.0).abs() < 0.05, "{name}: std {std}, PyTorch's {want}");
        }
    };
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _m = ConvModel::new(&vs, Arch::ResNet18, HeadKind::detection(20), 224);
    check_uniform(&vs, "head.lin1.weight", 512 * 7 * 7);
    check_uniform(&vs, "head.lin1.bias", 512 * 7 * 7);
    check_uniform(&vs, "head.lin2.weight", 256);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _m = ConvModel::new(&vs, Arch::ResNet18, HeadKind::Reg4, 224);
    check_uniform(&vs, "head.lin.weight", 512 * 7 * 7);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _m = ConvModel::new(&vs, Arch::ResNet18, HeadKind::Ssd(SsdConfig::lesson_189(20)), 224);
    check_uniform(&vs, "head.sconv0.conv.weight", 512 * 9);
    check_uniform(&vs, "head.sconv1.conv.bias", 256 * 9);
    check_uniform(&vs, "head.out1.oconv2.weight", 256 * 9);
    let bias = &vs.variables()["head.out1.oconv1.bias"];
    assert!(
        bias.equal(&Tensor::full(bias.size(), -4.0, (tch::Kind::Float, Device::Cpu))),
        "OutConv's class bias starts at -4"
    );
    // fastai's default head: apply_init(kaiming_normal), zero bias.
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _m = ConvModel::new(&vs, Arch::ResNet18, HeadKind::classifier(20), 224);
    let (_, std, _) = stats(&vs.variables()["head.lin1.weight"]);
    let want = (2.0 / 1024f64).sqrt();
    assert!((std / want - 1.0).abs() < 0.05, "classifier lin1 std {std}, Kaiming normal's {want}");
    assert_eq!(f64::try_from(vs.variables()["head.lin1.bias"].abs().max()).unwrap(), 0.0);
}

/// Outputs that do not fit the targets are errors, not libtorch aborts (no panic reaches a
/// notebook kernel).
#[test]
fn losses_and_metrics_check_the_output_shape() {
    use fastdet::data::BatchTarget;
    use fastdet::metrics::Metric;
    use fastdet::model::{Loss, ModelOutput};
    let zeros = |s: [i64; 2]| Tensor::zeros(s, (tch::Kind::Float, Device::Cpu));
    let class = BatchTarget::Class(Tensor::from_slice(&[0i64, 3]));
    assert!(Loss::CrossEntropy.compute(&ModelOutput::Logits(zeros([2, 5])), &class).is_ok());
    for (out, what) in [([3, 5], "rows"), ([2, 3], "class 3 of 3 outputs")] {
        let e = Loss::CrossEntropy.compute(&ModelOutput::Logits(zeros(out)), &class);
        assert!(e.is_err(), "{what}");
        assert!(Metric::Accuracy.compute(&ModelOutput::Logits(zeros(out)), &class).is_err(), "{what}");
    }
    let boxes = BatchTarget::Box(zeros([2, 4]));
    assert!(Loss::L1.compute(&ModelOutput::Box(zeros([2, 5])), &boxes).unwrap_err().to_string().contains("[2, 4]"));
    // An output of another kind than the targets need is an error naming both.
    let e = Loss::L1.compute(&ModelOutput::Logits(zeros([2, 4])), &boxes).unwrap_err().to_string();
    assert!(e.contains("class logits") && e.contains("Box"), "{e}");
}

/// Mixed precision through `fit`: on the CPU autocast does nothing and the scale is a power of
/// two, so scaling the loss and unscaling the gradients is exact: the same weights as without,
/// every step taken, and the report says so. (The scaler's rule itself: tests/it/amp.rs.)
#[test]
fn amp_fit_on_the_cpu_equals_the_fp32_fit() {
    let fit = |amp: bool| {
        let (_seq, mut l) = learner(64, 8);
        l.set_amp(amp);
        let report = l.fit(1e-3, 1, Default::default()).unwrap();
        (values(&l, "head"), report, l.amp().map(|s| (s.steps, s.skipped, s.scale())))
    };
    let (plain, _, none) = fit(false);
    let (mixed, report, scaler) = fit(true);
    assert!(none.is_none());
    let nb = report.losses.len();
    assert_eq!(scaler, Some((nb, 0, 65536.0)), "every one of the {nb} steps taken, the scale unchanged");
    assert!(max_change(&plain, &mixed) < 1e-6, "amp on the CPU changed the weights by {}", max_change(&plain, &mixed));
    assert!(max_change(&values(&learner(64, 8).1, "head"), &mixed) > 1e-4, "the fit moved the head");
    assert!(report.summary().contains("mixed precision: loss scale 65536, 0 of"), "{}", report.summary());
}

/// On a GPU `fit` and `lr_find` read the losses a few batches at a time
/// (`set_loss_read_every`, 16 on CUDA). The same here on the CPU with 3: the same learning
/// rates, smoothed losses, validation numbers and weights as reading every batch (a slip in the
/// bookkeeping, say the finder's rates not following the batches already stepped, changes them).
#[test]
fn reading_losses_a_few_batches_at_a_time_changes_nothing() {
    let run = |every: Option<usize>| {
        let (_seq, mut l) = learner(64, 4);
        l.set_loss_read_every(every);
        let found = l.lr_find(1e-5, 10.0).unwrap();
        let report = l.fit(1e-3, 1, Default::default()).unwrap();
        (
            found.lrs,
            found.losses,
            report.lrs,
            report.losses,
            report.epochs.iter().map(|e| (e.val_loss, e.metrics.clone())).collect::<Vec<_>>(),
            values(&l, "head"),
        )
    };
    let (a, b) = (run(None), run(Some(3)));
    assert!(a.0.len() > 3 && a.3.len() > 3, "several batches: {} and {}", a.0.len(), a.3.len());
    assert_eq!((&a.0, &a.1), (&b.0, &b.1), "lr_find");
    assert_eq!((&a.2, &a.3, &a.4), (&b.2, &b.3, &b.4), "fit");
    assert!(max_change(&a.5, &b.5) == 0.0, "weights differ by {}", max_change(&a.5, &b.5));
}

/// A user's callback: the global norm of the gradients each step uses (after every callback
/// before it in `before_step`).
#[derive(Clone, Default)]
struct GradNorms(std::sync::Arc<std::sync::Mutex<Vec<f64>>>);

impl fastdet::learner::Callback for GradNorms {
    fn before_step(
        &mut self,
        learn: &mut Learner,
        _opt: &mut tch::nn::Optimizer,
    ) -> fastdet::error::Result<fastdet::learner::StepChoice> {
        let sq: f64 = learn
            .model
            .vs
            .trainable_variables()
            .iter()
            .map(|v| v.grad())
            .filter(|g| g.defined())
            .map(|g| f64::try_from(g.square().sum(tch::Kind::Double)).unwrap())
            .sum();
        self.0.lock().unwrap().push(sq.sqrt());
        Ok(fastdet::learner::StepChoice::Take)
    }
}

/// A user's callback that ends the run after `n` batches.
struct StopAfter(usize, usize);

impl fastdet::learner::Callback for StopAfter {
    fn after_step(
        &mut self,
        _learn: &mut Learner,
        _b: &fastdet::learner::BatchInfo,
        _stepped: bool,
    ) -> fastdet::error::Result<fastdet::learner::Flow> {
        self.1 += 1;
        Ok(if self.1 >= self.0 { fastdet::learner::Flow::Stop } else { fastdet::learner::Flow::Continue })
    }
}

#[test]
fn user_callbacks_clip_gradients_and_stop_a_fit_after_n_batches() {
    let (_seq, mut l) = learner(64, 8);
    // Without clipping the head's gradients are larger than 0.05; with it, never.
    let free = GradNorms::default();
    l.add_callback(free.clone());
    l.add_callback(StopAfter(3, 0));
    let r = l.fit(1e-3, 1, FitOpts::default()).unwrap();
    assert_eq!(r.stopped, Some(fastdet::stop::Stopped { epoch: 0, batches: 3 }), "{:?}", r.stopped);
    assert_eq!(r.losses.len(), 3, "the recorder holds the 3 batches trained");
    let free = free.0.lock().unwrap().clone();
    assert_eq!(free.len(), 3);
    assert!(free.iter().all(|&n| n > 0.05), "{free:?}");

    l.clear_callbacks();
    let clipped = GradNorms::default();
    l.add_callback(fastdet::learner::ClipGradNorm(0.05));
    l.add_callback(clipped.clone());
    l.add_callback(StopAfter(2, 0));
    l.fit(1e-3, 1, FitOpts::default()).unwrap();
    let clipped = clipped.0.lock().unwrap().clone();
    assert_eq!(clipped.len(), 2);
    assert!(clipped.iter().all(|&n| n <= 0.05 * (1.0 + 1e-4)), "{clipped:?}");

    // lr_find runs the same loop: the user's stop ends it too, and the callbacks stay for the
    // next run.
    l.clear_callbacks();
    l.add_callback(StopAfter(4, 0));
    let f = l.lr_find(1e-5, 10.0).unwrap();
    assert_eq!(f.lrs.len(), 4, "lr_find recorded {} batches", f.lrs.len());
}
