//! A fastai 0.7-style learner: it owns the model, its `VarStore` and the data, so it lives
//! across notebook cells.
//!
//! - [`Learner::fit`] with fastai's schedules: SGDR cosine annealing (`cycle_len`, `cycle_mult`)
//!   and the triangular CLR (`use_clr = (div, cut)`), one learning rate or one per layer group,
//!   Adam (a fresh optimiser per `fit`, as fastai builds one per call);
//! - [`Learner::freeze_to`] / [`Learner::unfreeze`]: frozen groups get no gradient and their
//!   BatchNorm layers stay in eval mode; a new learner is frozen up to the head;
//! - [`Learner::lr_find`] restores the weights afterwards and plots loss against lr;
//! - the per-epoch table `epoch trn_loss val_loss <metrics>`, with fastai's smoothed training
//!   loss, a progress line for long epochs, and plots of the loss and lr curves;
//! - [`Learner::save`] / [`Learner::load`] (atomic: temp file + rename), [`Learner::predict`],
//!   [`Learner::summary`].
//!
//! A NaN or infinite loss stops training with an error naming the epoch and batch; the weights
//! are put back to what they were at the start of that epoch.

use crate::data::{Batch, DataLoader, ImageData};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{count_params, group_of, load_backbone, Arch, ConvModel, N_GROUPS};
use crate::task::{Task, TaskParts};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Learning rates: one for every group, or one per layer group (`[lr/100, lr/10, lr]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Lrs(pub Vec<f64>);

impl From<f64> for Lrs {
    fn from(lr: f64) -> Self {
        Lrs(vec![lr; N_GROUPS])
    }
}
impl From<Vec<f64>> for Lrs {
    fn from(v: Vec<f64>) -> Self {
        Lrs(v)
    }
}
impl<const N: usize> From<[f64; N]> for Lrs {
    fn from(v: [f64; N]) -> Self {
        Lrs(v.to_vec())
    }
}

impl Lrs {
    fn per_group(&self) -> Result<Vec<f64>> {
        if let Some(bad) = self.0.iter().find(|l| !(l.is_finite() && **l >= 0.0 && **l <= f32::MAX as f64)) {
            return Err(Error::Invalid(format!("learning rate {bad} is not a finite non-negative number")));
        }
        match self.0.len() {
            1 => Ok(vec![self.0[0]; N_GROUPS]),
            N_GROUPS => Ok(self.0.clone()),
            n => Err(Error::Invalid(format!("{n} learning rates for {N_GROUPS} layer groups: give 1 or {N_GROUPS}"))),
        }
    }

    /// Every rate divided by `d` (the lesson's `lrs/5`).
    pub fn div(&self, d: f64) -> Lrs {
        Lrs(self.0.iter().map(|l| l / d).collect())
    }
}

/// The schedule options of `fit` (fastai 0.7's keyword arguments).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FitOpts {
    /// Epochs per cycle; `None` = constant learning rate, one epoch per cycle.
    pub cycle_len: Option<usize>,
    /// Growth of the cycle length for SGDR (fastai's default 1).
    pub cycle_mult: Option<usize>,
    /// `(div, cut)` for the triangular CLR schedule.
    pub use_clr: Option<(f64, usize)>,
}

impl FitOpts {
    /// `cycle_len=n`
    pub fn cycle_len(n: usize) -> Self {
        Self { cycle_len: Some(n), ..Default::default() }
    }

    /// `cycle_len=n, use_clr=(div, cut)`
    pub fn clr(cycle_len: usize, div: f64, cut: usize) -> Self {
        Self { cycle_len: Some(cycle_len), use_clr: Some((div, cut)), ..Default::default() }
    }

    /// `n_cycle` epochs with these options: the error names the option (`cycle_len`,
    /// `cycle_mult`, `use_clr`) and says what is wrong. With `n_batches` (batches per epoch) the
    /// triangular cycle must be at least `cut` iterations long, else fastai's schedule divides by
    /// zero. The one check of `fit` and of `fastdet train`'s stages.
    pub fn validate(&self, n_cycle: usize, n_batches: Option<usize>) -> std::result::Result<(), (&'static str, String)> {
        if n_cycle == 0 {
            return Err(("n_cycle", "must be at least 1".into()));
        }
        if self.cycle_len == Some(0) {
            return Err(("cycle_len", "must be at least 1".into()));
        }
        if self.cycle_mult == Some(0) {
            return Err(("cycle_mult", "must be at least 1".into()));
        }
        if self.cycle_mult.is_some() && self.cycle_len.is_none() {
            return Err(("cycle_mult", "needs cycle_len (as in fastai)".into()));
        }
        if let Some((div, cut)) = self.use_clr {
            let Some(cl) = self.cycle_len else {
                return Err(("use_clr", "needs cycle_len (the length of the triangular cycle)".into()));
            };
            if self.cycle_mult.is_some() {
                return Err(("cycle_mult", "has no effect with use_clr (fastai ignores it): leave one out".into()));
            }
            if !(div.is_finite() && div >= 1.0) {
                return Err(("use_clr", format!("div {div} must be a number >= 1")));
            }
            if cut == 0 {
                return Err(("use_clr", "cut must be at least 1".into()));
            }
            if let Some(nb) = n_batches.filter(|&nb| nb * cl < cut) {
                return Err((
                    "use_clr",
                    format!(
                        "cut {cut} is more than the cycle's {} iterations ({nb} batches x cycle_len {cl}): the triangular schedule would divide by zero; use a smaller cut, a larger cycle_len or a smaller bs",
                        nb * cl
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Epochs that `fit(lrs, n_cycle, self)` trains.
    pub fn epochs(&self, n_cycle: usize) -> usize {
        match (self.cycle_len, self.use_clr) {
            (None, _) => n_cycle,
            (Some(cl), Some(_)) => n_cycle * cl,
            (Some(cl), None) => {
                let m = self.cycle_mult.unwrap_or(1);
                (0..n_cycle).map(|j| cl * m.pow(j as u32)).sum()
            }
        }
    }
}

/// The learning-rate multiplier of each iteration, exactly as fastai 0.7's `LR_Updater`s.
#[derive(Debug, Clone)]
pub enum Schedule {
    Constant,
    /// `CosAnneal(nb, cycle_mult)`: `1/100` for the first `nb/20` iterations of the whole fit,
    /// then `(cos(pi * i / nb) + 1) / 2` within each cycle.
    CosAnneal { nb: f64, cycle_mult: f64, cycle_iter: usize, iteration: usize },
    /// `CircularLR(nb, div, cut_div)`: up from `1/div` to 1 over `nb / cut_div` iterations (at
    /// least one), then down to `1/div`.
    Circular { nb: usize, div: f64, cut_div: usize, cycle_iter: usize },
}

impl Schedule {
    pub fn cos_anneal(nb: usize, cycle_mult: usize) -> Self {
        Schedule::CosAnneal { nb: nb as f64, cycle_mult: cycle_mult as f64, cycle_iter: 0, iteration: 0 }
    }

    pub fn circular(nb: usize, div: f64, cut_div: usize) -> Self {
        Schedule::Circular { nb, div, cut_div, cycle_iter: 0 }
    }

    /// The multiplier for the next iteration (`calc_lr(1.0)`), advancing the schedule.
    pub fn next_mult(&mut self) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::CosAnneal { nb, cycle_mult, cycle_iter, iteration } => {
                let it = *iteration;
                *iteration += 1;
                if (it as f64) < *nb / 20.0 {
                    *cycle_iter += 1;
                    return 0.01;
                }
                let cos_out = (std::f64::consts::PI * *cycle_iter as f64 / *nb).cos() + 1.0;
                *cycle_iter += 1;
                if *cycle_iter as f64 == *nb {
                    *cycle_iter = 0;
                    *nb *= *cycle_mult;
                }
                cos_out / 2.0
            }
            Schedule::Circular { nb, div, cut_div, cycle_iter } => {
                // fastai divides by zero when a cycle has fewer iterations than `cut_div`; the
                // peak then comes after the first iteration instead.
                let cut_pt = (*nb / *cut_div).max(1);
                let i = *cycle_iter;
                let pct = if i > cut_pt { 1.0 - (i - cut_pt) as f64 / (*nb - cut_pt) as f64 } else { i as f64 / cut_pt as f64 };
                *cycle_iter += 1;
                if *cycle_iter == *nb {
                    *cycle_iter = 0;
                }
                (1.0 + pct * (*div - 1.0)) / *div
            }
        }
    }
}

/// One row of the epoch table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub trn_loss: f64,
    pub val_loss: f64,
    pub metrics: Vec<f64>,
}

/// What training recorded: per iteration (lr of the last group, smoothed loss) and per epoch.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    pub epochs: Vec<EpochRow>,
    pub metric_names: Vec<String>,
}

impl Recorder {
    /// The epoch table as text.
    pub fn table(&self) -> String {
        let mut s = table_header(&self.metric_names, false);
        for r in &self.epochs {
            s += "\n";
            s += &table_line(None, r.epoch, r.trn_loss, r.val_loss, &r.metrics);
        }
        s
    }
}

/// The header of the epoch table: `[stage] epoch trn_loss val_loss <metrics>` (with a stage
/// column for `fastdet train`'s runs).
pub fn table_header(metric_names: &[String], with_stage: bool) -> String {
    let mut s = if with_stage { format!("{:>5} ", "stage") } else { String::new() };
    s += &format!("{:>5} {:>10} {:>10}", "epoch", "trn_loss", "val_loss");
    for m in metric_names {
        s += &format!(" {m:>12}");
    }
    s
}

/// One line of the epoch table (see [`table_header`]).
pub fn table_line(stage: Option<usize>, epoch: usize, trn_loss: f64, val_loss: f64, metrics: &[f64]) -> String {
    let mut s = stage.map(|k| format!("{k:>5} ")).unwrap_or_default();
    s += &format!("{epoch:>5} {trn_loss:>10.6} {val_loss:>10.6}");
    for v in metrics {
        s += &format!(" {v:>12.6}");
    }
    s
}

/// fastai's smoothing of the training loss: an exponential moving average with momentum
/// [`AVG_MOM`], debiased by `1 - AVG_MOM^n` (fastai 0.7's `fit` and `lr_find`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmoothedLoss {
    avg: f64,
    n: i32,
}

/// fastai's `avg_mom`.
pub const AVG_MOM: f64 = 0.98;

impl SmoothedLoss {
    /// Add a batch's loss; returns the debiased average so far.
    pub fn add(&mut self, loss: f64) -> f64 {
        self.n += 1;
        self.avg = self.avg * AVG_MOM + loss * (1.0 - AVG_MOM);
        self.avg / (1.0 - AVG_MOM.powi(self.n))
    }
}

/// The result of [`Learner::lr_find`]: learning rates (of the last group) and smoothed losses.
#[derive(Debug, Clone)]
pub struct LrFind {
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
}

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

/// Progress of the batches of an epoch: a bar on a terminal, else a line every few seconds.
struct BatchProgress {
    bar: Option<indicatif::ProgressBar>,
    last: Instant,
    total: usize,
    label: String,
}

impl BatchProgress {
    fn new(total: usize, label: String) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}<{eta} {prefix}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            b.set_message(label.clone());
            b
        });
        Self { bar, last: Instant::now(), total, label }
    }

    fn update(&mut self, done: usize, loss: f64) {
        match &self.bar {
            Some(b) => {
                b.set_position(done as u64);
                b.set_prefix(format!("loss {loss:.4}"));
            }
            None if self.last.elapsed() > Duration::from_secs(10) && done < self.total => {
                println!("  {} {done}/{} batches, loss {loss:.4}", self.label, self.total);
                self.last = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A model, its weights, its data and how to train it. See the module docs.
pub struct Learner {
    pub vs: nn::VarStore,
    pub model: ConvModel,
    pub data: ImageData,
    pub loss: Loss,
    pub metrics: Vec<Metric>,
    pub recorder: Recorder,
    /// Where `save`/`load` put weights (set with [`LearnerOpts::models_dir`]).
    models_dir: PathBuf,
    /// Groups below this one are frozen.
    frozen_to: usize,
    /// Epochs trained so far (each epoch gets its own shuffle and augmentations).
    epochs_done: usize,
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
        let TaskParts { target, head, loss, metrics } = parts;
        let found = data.trn_dl.dataset.target;
        if found != target {
            return Err(Error::Invalid(format!(
                "the data holds {found:?} targets but the head and loss are for {target:?}: build the ImageData with TargetKind::{target:?}"
            )));
        }
        let LearnerOpts { arch, weights, models_dir } = opts;
        let device = data.trn_dl.device;
        let sz = data.trn_dl.dataset.tfms.sz as i64;
        let mut vs = nn::VarStore::new(device);
        let model = ConvModel::new(&vs, arch, head, sz);
        match &weights {
            Some(w) => {
                let n = load_backbone(&mut vs, w)?;
                println!("loaded {n} backbone tensors of {} from {}", arch.name(), w.display());
            }
            None => println!(
                "{}: no pretrained weights given, the backbone is randomly initialised (see the README for ImageNet weights)",
                arch.name()
            ),
        }
        let metric_names = metrics.iter().map(|m| m.name()).collect();
        let mut learner = Self {
            vs,
            model,
            data,
            loss,
            metrics,
            recorder: Recorder { metric_names, ..Default::default() },
            models_dir,
            frozen_to: 0,
            epochs_done: 0,
        };
        learner.freeze_to(-1);
        Ok(learner)
    }

    /// Where `save` and `load` put weights.
    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Freeze the layer groups before `n` (negative counts from the end: `-2` leaves the last
    /// two groups trainable). Frozen groups get no gradient; their BatchNorm stays in eval mode.
    pub fn freeze_to(&mut self, n: isize) {
        let n = if n < 0 { (N_GROUPS as isize + n).max(0) as usize } else { (n as usize).min(N_GROUPS) };
        self.frozen_to = n;
        for (name, t) in self.vs.variables() {
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

    /// Model outputs for a batch of images, in eval mode, without gradients.
    pub fn predict_batch(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.model.forward(&x.to_device(self.device()), false, N_GROUPS))
    }

    /// Outputs for the whole validation set, in order (fastai's `learn.predict()`).
    pub fn predict(&self) -> Result<Tensor> {
        let mut outs = vec![];
        for b in self.data.val_dl.iter(0) {
            outs.push(self.predict_batch(&b?.x));
        }
        if outs.is_empty() {
            return Err(Error::Invalid("predict: the validation set is empty".into()));
        }
        Ok(Tensor::cat(&outs, 0))
    }

    /// Validation loss and metrics, averaged weighted by batch size.
    pub fn validate(&self, dl: &DataLoader) -> Result<(f64, Vec<f64>)> {
        let (mut loss, mut metrics, mut n) = (0.0, vec![0.0; self.metrics.len()], 0usize);
        for b in dl.iter(0) {
            let b = b?;
            let bs = b.indices.len();
            let out = self.predict_batch(&b.x);
            loss += f64::try_from(self.loss.compute(&out, &b.y)?)? * bs as f64;
            for (acc, m) in metrics.iter_mut().zip(&self.metrics) {
                *acc += m.compute(&out, &b.y)? * bs as f64;
            }
            n += bs;
        }
        let n = n.max(1) as f64;
        Ok((loss / n, metrics.into_iter().map(|m| m / n).collect()))
    }

    fn optimizer(&self, lrs: &[f64]) -> Result<nn::Optimizer> {
        let mut opt = nn::Adam::default().build(&self.vs, lrs[N_GROUPS - 1])?;
        for (g, lr) in lrs.iter().enumerate() {
            opt.set_lr_group(g, *lr);
        }
        Ok(opt)
    }

    /// A copy of every variable (weights and BatchNorm statistics).
    fn snapshot(&self) -> Vec<(String, Tensor)> {
        self.vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
    }

    fn restore(&self, snap: &[(String, Tensor)]) {
        let vars = self.vs.variables();
        tch::no_grad(|| {
            for (n, t) in snap {
                if let Some(v) = vars.get(n) {
                    let mut v = v.shallow_clone();
                    v.copy_(t);
                }
            }
        });
    }

    /// One training step on a batch; returns the loss.
    fn step(&mut self, opt: &mut nn::Optimizer, batch: &Batch) -> Result<f64> {
        let out = self.model.forward(&batch.x, true, self.frozen_to);
        let loss = self.loss.compute(&out, &batch.y)?;
        let value = f64::try_from(&loss)?;
        if value.is_finite() {
            opt.backward_step(&loss);
        }
        Ok(value)
    }

    /// fastai 0.7's `fit(lrs, n_cycle, cycle_len, cycle_mult, use_clr)`; prints the epoch table
    /// and returns the last `[val_loss, metrics...]`.
    pub fn fit(&mut self, lrs: impl Into<Lrs>, n_cycle: usize, opts: FitOpts) -> Result<Vec<f64>> {
        let lrs = lrs.into().per_group()?;
        let nb = self.data.trn_dl.len();
        if nb == 0 {
            return Err(Error::Invalid("fit: the training set is empty".into()));
        }
        opts.validate(n_cycle, Some(nb)).map_err(|(field, problem)| Error::Invalid(format!("fit: {field}: {problem}")))?;
        let n_epochs = opts.epochs(n_cycle);
        let mut sched = match (opts.cycle_len, opts.use_clr) {
            (None, _) => Schedule::Constant,
            (Some(cl), Some((div, cut))) => Schedule::circular(nb * cl, div, cut),
            (Some(cl), None) => Schedule::cos_anneal(nb * cl, opts.cycle_mult.unwrap_or(1)),
        };
        let mut opt = self.optimizer(&lrs)?;
        // fastai restarts the smoothed training loss at every fit.
        let mut smoother = SmoothedLoss::default();
        let mut last = vec![];
        println!("{}", table_header(&self.recorder.metric_names, false));
        for e in 0..n_epochs {
            let epoch = self.epochs_done;
            let snap = self.snapshot();
            let mut progress = BatchProgress::new(nb, format!("epoch {e}"));
            let mut smoothed = f64::NAN;
            for (k, batch) in self.data.trn_dl.clone().iter(epoch as u64).enumerate() {
                let batch = batch?;
                let mult = sched.next_mult();
                for (g, lr) in lrs.iter().enumerate() {
                    opt.set_lr_group(g, lr * mult);
                }
                let loss = self.step(&mut opt, &batch)?;
                if !loss.is_finite() {
                    self.restore(&snap);
                    return Err(Error::NonFinite { what: "loss".into(), value: loss, epoch: e, batch: Some(k) });
                }
                smoothed = smoother.add(loss);
                self.recorder.lrs.push(lrs[N_GROUPS - 1] * mult);
                self.recorder.losses.push(smoothed);
                progress.update(k + 1, smoothed);
            }
            progress.finish();
            let (val_loss, metrics) = self.validate(&self.data.val_dl)?;
            let row = EpochRow { epoch: e, trn_loss: smoothed, val_loss, metrics: metrics.clone() };
            println!("{}", table_line(None, row.epoch, row.trn_loss, row.val_loss, &row.metrics));
            self.recorder.epochs.push(row);
            self.epochs_done += 1;
            last = std::iter::once(val_loss).chain(metrics).collect();
        }
        Ok(last)
    }

    /// fastai's `lr_find(start_lr, end_lr)`: over at most one epoch the learning rate grows
    /// exponentially from `start` to `end`; stops when the smoothed loss is NaN or over 4x the
    /// best (after 10 iterations); the weights are restored afterwards.
    pub fn lr_find(&mut self, start: impl Into<Lrs>, end: f64) -> Result<LrFind> {
        let start = start.into().per_group()?;
        let snap = self.snapshot();
        let nb = self.data.trn_dl.len().max(1);
        let ratio = end / start[N_GROUPS - 1];
        let mut opt = self.optimizer(&start)?;
        let (mut smoother, mut best) = (SmoothedLoss::default(), f64::INFINITY);
        let mut found = LrFind { lrs: vec![], losses: vec![] };
        let result = (|| -> Result<()> {
            for (i, batch) in self.data.trn_dl.clone().iter(self.epochs_done as u64).enumerate() {
                let mult = ratio.powf(i as f64 / nb as f64);
                for (g, lr) in start.iter().enumerate() {
                    opt.set_lr_group(g, lr * mult);
                }
                let loss = self.step(&mut opt, &batch?)?;
                let smoothed = smoother.add(loss);
                // fastai stops before recording the batch that diverged.
                if smoothed.is_nan() || (i > 10 && smoothed > best * 4.0) {
                    break;
                }
                found.lrs.push(start[N_GROUPS - 1] * mult);
                found.losses.push(smoothed);
                if smoothed < best && i > 10 {
                    best = smoothed;
                }
            }
            Ok(())
        })();
        self.restore(&snap);
        result?;
        Ok(found)
    }

    /// Output shapes and parameter counts of each layer for a batch of 2 (fastai's `summary()`).
    pub fn summary(&self) -> Summary {
        let sz = self.model.sz;
        let x = Tensor::zeros([2, 3, sz, sz], (Kind::Float, self.device()));
        let mut rows = vec![];
        tch::no_grad(|| {
            let stages = self.model.body.stages(&x, [false, false]);
            let feats = stages.last().map(|s| s.1.shallow_clone()).unwrap_or(x.shallow_clone());
            for (name, t) in &stages {
                let prefix = match *name {
                    "bn1+relu" => "bn1.".to_string(),
                    "maxpool" => "-".to_string(),
                    n => format!("{n}."),
                };
                rows.push((name.to_string(), t.size(), count_params(&self.vs, &prefix)));
            }
            for (name, t, prefix) in self.model.head.stages(&feats, false) {
                rows.push((format!("head {name}"), t.size(), prefix.map(|p| count_params(&self.vs, p)).unwrap_or(0)));
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
        std::fs::create_dir_all(&self.models_dir).map_err(|e| Error::io(&self.models_dir, e))?;
        let tmp = self.models_dir.join(format!(".{name}.{}.tmp.safetensors", std::process::id()));
        self.vs.save(&tmp).map_err(|e| Error::checkpoint(&tmp, format!("cannot save weights: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// Load `models/<name>.safetensors` (or a path ending in `.safetensors`).
    pub fn load(&mut self, name: &str) -> Result<()> {
        let path = if name.ends_with(".safetensors") { PathBuf::from(name) } else { self.path_of(name) };
        if !path.is_file() {
            return Err(Error::Io { path, source: std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found") });
        }
        self.vs.load(&path).map_err(|e| Error::checkpoint(&path, format!("not a checkpoint of this model (corrupt, or another architecture): {e}")))?;
        Ok(())
    }
}
