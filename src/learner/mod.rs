//! A fastai 0.7-style learner: it owns the model, its `VarStore` and the data, so it lives
//! across notebook cells.
//!
//! - [`Learner::fit`] with fastai's schedules ([`schedule`]): SGDR cosine annealing
//!   (`cycle_len`, `cycle_mult`) and the triangular CLR (`use_clr = (div, cut)`), one learning
//!   rate or one per layer group, Adam (a fresh optimiser per `fit`, as fastai builds one per
//!   call); progress while it runs ([`progress`]), a [`FitReport`] at the end ([`record`]);
//! - stopping without losing anything ([`fit`], [`state`]): the stop button or Ctrl-C ends a fit
//!   after the current batch with the learner intact; [`Learner::fit_background`] runs a fit
//!   you can watch and stop from other cells; after every epoch the learner's state goes to
//!   `models_dir/last`, which [`Learner::restore_last`] rebuilds after a kernel restart;
//!   [`Learner::checkpoint`] / [`Learner::restore`] go back in memory;
//! - [`Learner::freeze_to`] / [`Learner::unfreeze`]: frozen groups get no gradient and their
//!   BatchNorm layers stay in eval mode; a new learner is frozen up to the head;
//! - [`Learner::lr_find`] restores the weights afterwards and suggests learning rates;
//! - [`Learner::save`] / [`Learner::load`] (atomic: a synced temporary file renamed over the
//!   old one), [`Learner::predict`], [`Learner::summary`].
//!
//! A NaN or infinite loss or validation number stops training with an error naming the epoch
//! (and batch); the weights are put back to what they were at the start of that epoch.

pub mod adam;
pub mod amp;
pub mod best;
pub mod callback;
pub mod fit;
pub mod progress;
pub mod record;
pub mod schedule;
pub mod state;

pub use amp::{GradScaler, ScalerOpts};
pub use best::{BestEpoch, BEST_DIR};
pub use callback::{BatchEnd, BatchInfo, Callback, ClipGradNorm, Flow, StepChoice};
pub use fit::FitHandle;
pub use record::{
    epoch_table, table_header, table_line, EpochRow, FitReport, LrFind, LrFinder, LrSuggestion, Recorder, SmoothedLoss,
    AVG_MOM,
};
pub use schedule::{EarlyStop, FitOpts, Lrs, Schedule};
pub use state::Checkpoint;

use crate::data::{Batch, DataLoader, ImageData};
use crate::error::{Error, Result};
use crate::metrics::Metric;
use crate::model::{
    count_params, group_of, load_backbone, Arch, Model, ModelOutput, ModelSpec, N_GROUPS, SPEC_VERSION,
};
use crate::stop::StopFlag;
use crate::task::{Task, TaskParts};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Output shapes and parameter counts, layer by layer.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rows: Vec<(String, Vec<i64>, i64)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<24} {:<22} {:>12}", "layer", "output shape", "params")?;
        for (n, s, p) in &self.rows {
            writeln!(f, "{n:<24} {:<22} {p:>12}", format!("{s:?}"))?;
        }
        write!(f, "{:<24} {:<22} {:>12}", "total", "", self.rows.iter().map(|r| r.2).sum::<i64>())
    }
}

/// A model and how to train it: its data, the optimiser's settings, the schedule and the
/// recorder. The model ([`Model`]) holds its weights, computes its loss and knows what it is.
/// See the module docs.
pub struct Learner {
    pub model: Model,
    pub data: ImageData,
    pub metrics: Vec<Metric>,
    pub recorder: Recorder,
    /// Where `save`/`load` put weights (set with [`LearnerOpts::models_dir`]).
    models_dir: PathBuf,
    /// Groups below this one are frozen.
    frozen_to: usize,
    /// Epochs trained so far (each epoch gets its own shuffle and augmentations).
    epochs_done: usize,
    /// Set to stop a running fit after its current batch ([`Learner::stop_flag`]).
    stop: StopFlag,
    /// Where a fit in the background publishes its progress ([`FitHandle::progress`]).
    live: Option<Arc<Mutex<FitReport>>>,
    /// An unfinished fit found by [`Learner::restore_last`], for [`Learner::resume_fit`].
    pending: Option<state::FitInProgress>,
    /// Mixed precision ([`Learner::set_amp`]): autocast forward passes and this gradient scaler.
    amp: Option<GradScaler>,
    /// Batches whose losses `fit` and `lr_find` read at once ([`Learner::set_loss_read_every`]).
    loss_read_every: Option<usize>,
    /// The user's callbacks ([`Learner::add_callback`]), after the built-in ones in every run.
    callbacks: Vec<Box<dyn Callback + Send>>,
    /// The optimiser of the latest `fit` and its state ([`adam`]; `last/` saves it).
    adam: Option<adam::Adam>,
}

/// How to build a [`Learner`] beyond its data and task: the backbone, its ImageNet weights and
/// where checkpoints go.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerOpts {
    pub arch: Arch,
    /// A torchvision state dict of the backbone (`.pth` or `.safetensors`); `None` = random.
    pub weights: Option<PathBuf>,
    /// Where `save`/`load` put weights (`models/` as fastai).
    pub models_dir: PathBuf,
}

impl Default for LearnerOpts {
    /// ResNet34 (the lesson's), no weights, `models/`.
    fn default() -> Self {
        Self { arch: Arch::ResNet34, weights: None, models_dir: PathBuf::from("models") }
    }
}

impl LearnerOpts {
    /// The lesson's ResNet34 with `weights` (from [`crate::model::find_weights`], say), saving
    /// under `models_dir`.
    pub fn new(weights: Option<PathBuf>, models_dir: impl Into<PathBuf>) -> Self {
        Self { weights, models_dir: models_dir.into(), ..Default::default() }
    }

    pub fn arch(mut self, arch: Arch) -> Self {
        self.arch = arch;
        self
    }
}

impl Learner {
    /// A learner for `task`'s head, loss and metrics ([`Task::parts`]) on `data`, whose target
    /// must be the task's. See [`Learner::new`].
    pub fn for_task(data: ImageData, task: Task, opts: LearnerOpts) -> Result<Self> {
        let parts = task.parts(data.classes.len() as i64, data.trn_dl.dataset.tfms.sz);
        Self::new(data, parts, opts)
    }

    /// A learner with a ResNet body and the head, loss and metrics of `parts`; the body is
    /// loaded from `opts.weights` (a torchvision state dict) if given, else randomly
    /// initialised, which it says. The new learner is frozen up to its head, as fastai's
    /// `ConvLearner.pretrained`. An error when `data` holds other targets than `parts` reads.
    pub fn new(data: ImageData, parts: TaskParts, opts: LearnerOpts) -> Result<Self> {
        Self::build(data, parts, opts, true)
    }

    /// [`Learner::new`]; `announce` says where the backbone's weights came from.
    fn build(data: ImageData, parts: TaskParts, opts: LearnerOpts, announce: bool) -> Result<Self> {
        let TaskParts { target, head, loss, metrics } = parts;
        let found = data.trn_dl.dataset.target;
        if found != target {
            return Err(Error::Invalid(format!(
                "the data holds {found:?} targets but the head and loss are for {target:?}: build the ImageData with TargetKind::{target:?}"
            )));
        }
        let LearnerOpts { arch, weights, models_dir } = opts;
        let device = data.trn_dl.device;
        let spec = ModelSpec {
            version: SPEC_VERSION,
            target,
            classes: data.classes.clone(),
            sz: data.trn_dl.dataset.tfms.sz,
            crop: data.val_dl.dataset.tfms.crop,
            arch,
            head,
            loss,
        };
        let mut model = Model::new(spec, device);
        match &weights {
            Some(w) => {
                let n = load_backbone(&mut model.vs, w)?;
                println!("loaded {n} backbone tensors of {} from {}", arch.name(), w.display());
            }
            None if announce => println!(
                "{}: no pretrained weights given, the backbone is randomly initialised (ImageNet weights: docs/notebooks.md)",
                arch.name()
            ),
            None => {}
        }
        let metric_names = metrics.iter().map(|m| m.name()).collect();
        let mut learner = Self {
            model,
            data,
            metrics,
            recorder: Recorder { metric_names, ..Default::default() },
            models_dir,
            frozen_to: 0,
            epochs_done: 0,
            stop: StopFlag::default(),
            live: None,
            pending: None,
            amp: None,
            loss_read_every: None,
            callbacks: vec![],
            adam: None,
        };
        learner.freeze_to(-1);
        Ok(learner)
    }

    /// Change an SSD learner's loss settings (the matching rule, the class loss), which change
    /// no layer, in its model's one config ([`Model::configure_ssd`]). Nothing for other learners.
    pub fn configure_ssd(&mut self, f: impl Fn(&mut crate::model::ssd::SsdConfig)) -> Result<()> {
        self.model.configure_ssd(f)
    }

    /// What this learner's model is, as its checkpoints record it ([`crate::model::checkpoint`]):
    /// [`Model::load`] rebuilds the model from a checkpoint alone.
    pub fn spec(&self) -> ModelSpec {
        self.model.spec.clone()
    }

    /// Where `save` and `load` put weights.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// The flag that stops a running `fit` or `lr_find` after its current batch (the stop
    /// button and Ctrl-C set it too, while a fit runs).
    pub fn stop_flag(&self) -> StopFlag {
        self.stop.clone()
    }

    /// What the head, loss and metrics are (to rebuild the learner elsewhere).
    pub fn parts(&self) -> TaskParts {
        TaskParts {
            target: self.model.spec.target,
            head: self.model.spec.head.clone(),
            loss: self.model.spec.loss.clone(),
            metrics: self.metrics.clone(),
        }
    }

    pub fn device(&self) -> Device {
        self.model.device()
    }

    /// Freeze the layer groups before `n` (negative counts from the end: `-2` leaves the last
    /// two groups trainable). Frozen groups get no gradient; their BatchNorm stays in eval mode.
    pub fn freeze_to(&mut self, n: isize) {
        let n = if n < 0 { (N_GROUPS as isize + n).max(0) as usize } else { (n as usize).min(N_GROUPS) };
        self.frozen_to = n;
        for (name, t) in self.model.vs.variables() {
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                continue;
            }
            let _ = t.set_requires_grad(group_of(&name) >= n);
        }
    }

    /// Every group trainable (`freeze_to(0)`).
    pub fn unfreeze(&mut self) {
        self.freeze_to(0);
    }

    /// The first trainable group.
    pub fn frozen_to(&self) -> usize {
        self.frozen_to
    }

    /// Epochs trained so far: each epoch's shuffle and augmentations are seeded with its number.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// Continue the epoch count of an earlier run (resuming from a checkpoint gives the later
    /// epochs the batches an uninterrupted run would have seen).
    pub fn set_epochs_done(&mut self, n: usize) {
        self.epochs_done = n;
    }

    /// Model outputs for a batch of images, in eval mode, without gradients (fp32 with mixed
    /// precision too).
    pub fn predict_batch(&self, x: &Tensor) -> ModelOutput {
        let out = tch::autocast(self.amp.is_some(), || self.model.predict(x));
        if self.amp.is_some() {
            out.float()
        } else {
            out
        }
    }

    /// Outputs for the whole validation set, in order (fastai's `learn.predict()`).
    pub fn predict(&self) -> Result<ModelOutput> {
        let mut outs = vec![];
        for b in self.data.val_dl.iter(0) {
            outs.push(self.predict_batch(&b?.x));
        }
        if outs.is_empty() {
            return Err(Error::Invalid("predict: the validation set is empty".into()));
        }
        ModelOutput::cat(&outs)
    }

    /// Validation loss and metrics, averaged weighted by batch size, but for whole-set metrics
    /// ([`Metric::Map`]), computed on all the batches' outputs at once. (`fit` checks that they
    /// are finite.) The sums stay on the model's device and are read once, at the end: no wait
    /// for the GPU at every batch.
    pub fn validate(&self, dl: &DataLoader) -> Result<(f64, Vec<f64>)> {
        let mut sums: Option<Vec<Tensor>> = None;
        let mut n = 0usize;
        let mut whole = crate::metrics::WholeSetMetrics::new(&self.metrics, &self.model)?;
        let per_batch: Vec<&Metric> = self.metrics.iter().filter(|m| m.per_batch()).collect();
        for b in dl.iter(0) {
            let b = b?;
            let bs = b.indices.len() as f64;
            let out = self.predict_batch(&b.x);
            let mut values = vec![self.model.loss(&out, &b.y)?];
            for m in &per_batch {
                values.push(m.compute_tensor(&out, &b.y)?);
            }
            whole.add(&self.model, &out, dl, &b.indices)?;
            let values: Vec<Tensor> = values.iter().map(|v| v.detach().to_kind(Kind::Double) * bs).collect();
            sums = Some(match sums {
                None => values,
                Some(acc) => acc.iter().zip(&values).map(|(a, v)| a + v).collect(),
            });
            n += b.indices.len();
        }
        let n = n.max(1) as f64;
        let totals: Vec<f64> = match sums {
            None => vec![0.0; 1 + per_batch.len()],
            Some(sums) => Vec::try_from(Tensor::stack(&sums, 0))?,
        };
        Ok((totals[0] / n, whole.merge(totals[1..].iter().map(|m| m / n).collect(), dl)?))
    }

    pub(crate) fn optimizer(&self, lrs: &[f64]) -> Result<nn::Optimizer> {
        let mut opt = nn::Adam::default().build(&self.model.vs, lrs[N_GROUPS - 1])?;
        for (g, lr) in lrs.iter().enumerate() {
            opt.set_lr_group(g, *lr);
        }
        Ok(opt)
    }

    /// A copy of every variable (weights and BatchNorm statistics).
    pub(crate) fn snapshot(&self) -> Vec<(String, Tensor)> {
        self.model.vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
    }

    pub(crate) fn restore_vars(&self, snap: &[(String, Tensor)]) {
        let vars = self.model.vs.variables();
        tch::no_grad(|| {
            for (n, t) in snap {
                if let Some(v) = vars.get(n) {
                    let mut v = v.shallow_clone();
                    v.copy_(t);
                }
            }
        });
    }

    /// The training forward pass (under autocast with mixed precision) and its loss, in fp32.
    pub(crate) fn forward_loss(&self, batch: &Batch) -> Result<Tensor> {
        let out = tch::autocast(self.amp.is_some(), || self.model.forward_t(&batch.x, true, self.frozen_to));
        self.model.loss(&out.float(), &batch.y)
    }

    /// Mixed precision on or off: forward passes under autocast (fp16 on CUDA; tch's autocast
    /// does nothing on the CPU, where training stays fp32) and gradients through a
    /// [`GradScaler`] with PyTorch's defaults. The scaler lives as long as the setting, across
    /// fits, as a PyTorch training loop keeps its one `GradScaler`.
    pub fn set_amp(&mut self, on: bool) {
        self.amp = on.then(|| GradScaler::new(ScalerOpts::default(), self.device()));
    }

    /// The gradient scaler when mixed precision is on (its scale, steps taken and skipped).
    pub fn amp(&self) -> Option<&GradScaler> {
        self.amp.as_ref()
    }

    /// How many batches' losses `fit` and `lr_find` read from the device at once: each read
    /// makes the host wait for the GPU, so on CUDA they stay there and are read
    /// [`fit::LOSS_READ_EVERY`] (16) at a time; on the CPU each is read at once, before its backward
    /// pass (a non-finite loss then stops the fit with the weights untouched). `None` restores
    /// that default. The results are the same either way, bar where a run diverges.
    pub fn set_loss_read_every(&mut self, n: Option<usize>) {
        self.loss_read_every = n.map(|n| n.max(1));
    }

    /// Batches per loss read ([`Learner::set_loss_read_every`]).
    pub fn loss_read_every(&self) -> usize {
        self.loss_read_every.unwrap_or(if self.device().is_cuda() { fit::LOSS_READ_EVERY } else { 1 })
    }

    /// Output shapes and parameter counts of each layer for a batch of 2 (fastai's `summary()`).
    pub fn summary(&self) -> Summary {
        let sz = self.model.sz() as i64;
        let x = Tensor::zeros([2, 3, sz, sz], (Kind::Float, self.device()));
        let mut rows = vec![];
        tch::no_grad(|| {
            let stages = self.model.net.body.stages(&x, [false, false]);
            let feats = stages.last().map(|s| s.1.shallow_clone()).unwrap_or(x.shallow_clone());
            for (name, t) in &stages {
                let prefix = match *name {
                    "bn1+relu" => "bn1.".to_string(),
                    "maxpool" => "-".to_string(),
                    n => format!("{n}."),
                };
                rows.push((name.to_string(), t.size(), count_params(&self.model.vs, &prefix)));
            }
            for (name, t, prefix) in self.model.net.head.stages(&feats, false) {
                let params = prefix.map(|p| count_params(&self.model.vs, p)).unwrap_or(0);
                rows.push((format!("head {name}"), t.size(), params));
            }
        });
        Summary { rows }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.models_dir.join(format!("{name}.safetensors"))
    }

    /// Save every variable to `models/<name>.safetensors`, atomically.
    pub fn save(&self, name: &str) -> Result<PathBuf> {
        let path = self.path_of(name);
        self.model.save(&path)?;
        Ok(path)
    }

    /// Load `models/<name>.safetensors` (or a path ending in `.safetensors`).
    pub fn load(&mut self, name: &str) -> Result<()> {
        let path = if name.ends_with(".safetensors") { PathBuf::from(name) } else { self.path_of(name) };
        self.model.load_weights(&path)
    }

    /// Load the weights of the best epoch that [`FitOpts::keep_best`] kept in
    /// `models_dir/best/`, and say which epoch that was.
    pub fn load_best(&mut self) -> Result<BestEpoch> {
        let best = best::read_best(self)?;
        let path = best.weights.clone().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: the fit only stopped early, it kept no weights (FitOpts::keep_best keeps them)",
                self.models_dir().join(BEST_DIR).join(best::BEST_FILE).display()
            ))
        })?;
        self.model.load_weights(&path)?;
        Ok(best)
    }
}
