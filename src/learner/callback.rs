//! The events around each batch of the one training loop ([`Learner::run`], which `fit`,
//! `lr_find` and `fit_background` share) and what hooks into them: fastai's callbacks (0.7's
//! `on_batch_end`, v2's `before_batch` ... `after_fit`). The schedule, the recorder, the
//! progress display, the autosave, the stop flag, the NaN guard, mixed precision and the
//! per-epoch seed are each a [`Callback`] here (keeping the best epoch and stopping early:
//! [`super::best`]); a user adds their own with [`Learner::add_callback`] (say
//! [`ClipGradNorm`]).
//!
//! The events of one batch, in order: [`Callback::before_batch`] (the learning rates of its
//! step), the forward pass, [`Callback::after_loss`] (with the loss where it is read at once, on
//! the CPU), [`Callback::before_backward`], the backward pass, [`Callback::before_step`] (the
//! gradients, before the optimiser uses them), the step, [`Callback::after_step`], then, once the
//! loss is read (on CUDA [`super::fit::LOSS_READ_EVERY`] batches at a time),
//! [`Callback::after_batch`]. Around them: [`Callback::before_epoch`], and in `fit`
//! [`Callback::after_validate`] (the epoch's row, before the epoch counts) and
//! [`Callback::after_epoch`]. Callbacks run in order, the learner's built-in ones first; a
//! callback that returns [`Flow::Stop`] ends the run there (the callbacks after it do not see
//! that event) and an error ends it with that error.

use super::amp::GradScaler;
use super::progress::{BatchProgress, LiveView};
use super::record::{table_header, table_line, EpochRow, FitReport, LrFinder};
use super::schedule::Schedule;
use super::state::FitInProgress;
use super::Learner;
use crate::error::{Error, Result};
use crate::model::N_GROUPS;
use std::time::Instant;
use tch::{nn, Tensor};

/// Whether the run goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Whether the optimiser steps after [`Callback::before_step`] (mixed precision skips a step
/// whose gradients are not finite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepChoice {
    Take,
    Skip,
}

/// Where a batch is: its epoch in this run (`fit`'s epoch numbers, counting a resumed fit's
/// earlier epochs), its index in the epoch, and its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub epoch: usize,
    pub batch: usize,
    pub images: usize,
}

/// A batch after its step, once its loss is read: the raw loss, fastai's smoothed loss so far in
/// this run, and the learning rate of the last layer group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchEnd {
    pub info: BatchInfo,
    pub loss: f64,
    pub smoothed: f64,
    pub lr: f64,
}

/// Something that hooks into the training loop; every event does nothing by default. Each gets
/// the learner (its model, data, recorder, ...).
#[allow(unused_variables)]
pub trait Callback {
    /// Before an epoch's first batch; [`Flow::Stop`] ends the run before it.
    fn before_epoch(&mut self, learn: &mut Learner, epoch: usize) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// Before a batch's forward pass: `lrs` (one per layer group) are the rates its step will
    /// use, which a schedule sets.
    fn before_batch(&mut self, learn: &mut Learner, b: &BatchInfo, lrs: &mut [f64]) -> Result<()> {
        Ok(())
    }

    /// After the forward pass; `loss` is its value where it is read at once (the CPU), `None`
    /// where it stays on the device until [`Callback::after_batch`].
    fn after_loss(&mut self, learn: &mut Learner, b: &BatchInfo, loss: Option<f64>) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// The tensor to call `backward` on, from the loss (mixed precision scales it).
    fn before_backward(&mut self, learn: &mut Learner, loss: Tensor) -> Result<Tensor> {
        Ok(loss)
    }

    /// After the backward pass, before the optimiser's step: the gradients are there to read or
    /// change (clipping); [`StepChoice::Skip`] skips this step.
    fn before_step(&mut self, learn: &mut Learner, opt: &mut nn::Optimizer) -> Result<StepChoice> {
        Ok(StepChoice::Take)
    }

    /// After the step (`stepped`: whether the optimiser stepped).
    fn after_step(&mut self, learn: &mut Learner, b: &BatchInfo, stepped: bool) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// A batch's loss once read, in batch order.
    fn after_batch(&mut self, learn: &mut Learner, b: &BatchEnd) -> Result<Flow> {
        Ok(Flow::Continue)
    }

    /// `fit` only: the epoch's row (smoothed training loss, validation loss, metrics), before the
    /// epoch counts.
    fn after_validate(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<()> {
        Ok(())
    }

    /// `fit` only: after the epoch has counted ([`Learner::epochs_done`]).
    fn after_epoch(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<Flow> {
        Ok(Flow::Continue)
    }
}

/// A user's callback: clip the gradients' global L2 norm to `max` before each step (PyTorch's
/// `clip_grad_norm_`; one host read per step). With mixed precision it sees the gradients
/// after unscaling, as PyTorch's recipe wants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipGradNorm(pub f64);

impl Callback for ClipGradNorm {
    fn before_step(&mut self, _learn: &mut Learner, opt: &mut nn::Optimizer) -> Result<StepChoice> {
        opt.clip_grad_norm(self.0);
        Ok(StepChoice::Take)
    }
}

/// `fit`'s random numbers inside the model (dropout): libtorch's generator is seeded at each
/// epoch's start from the training loader's seed and the learner's epoch count, as the loader
/// seeds each epoch's shuffle and augmentations, so an epoch draws the same masks whether the
/// fit ran through or was resumed from `last/` before it.
pub(crate) struct EpochSeedCb;

impl EpochSeedCb {
    /// The seed of epoch `epochs_done` of a loader seeded with `seed` (splitmix64's finaliser).
    pub fn seed(seed: u64, epochs_done: usize) -> i64 {
        let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (epochs_done as u64).wrapping_add(0xD1B5_4A32_D192_ED03);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 1) as i64
    }
}

impl Callback for EpochSeedCb {
    fn before_epoch(&mut self, learn: &mut Learner, _epoch: usize) -> Result<Flow> {
        tch::manual_seed(Self::seed(learn.data.trn_dl.seed, learn.epochs_done()));
        Ok(Flow::Continue)
    }
}

/// `fit`'s learning rates: the base rates times fastai's schedule (SGDR or CLR).
pub(crate) struct ScheduleCb {
    pub sched: Schedule,
}

impl Callback for ScheduleCb {
    fn before_batch(&mut self, _learn: &mut Learner, _b: &BatchInfo, lrs: &mut [f64]) -> Result<()> {
        let mult = self.sched.next_mult();
        for lr in lrs.iter_mut() {
            *lr *= mult;
        }
        Ok(())
    }
}

/// `lr_find`: the exponentially growing rates, the stop when the loss diverges, and the live
/// output of loss against learning rate so far. Batch `k` steps with the rates `k` batches
/// after the start whether or not the finder has seen the losses in between (on CUDA they are
/// read a few at a time).
pub(crate) struct FinderCb {
    pub finder: LrFinder,
    pub diverged: bool,
    pub progress: BatchProgress,
}

impl FinderCb {
    /// What the live output shows: the bar and the curve so far.
    pub fn view(&self) -> LiveView {
        let f = self.finder.so_far();
        LiveView::LrFind { bar: self.progress.bar_now(), lrs: f.lrs, losses: f.losses }
    }
}

impl Callback for FinderCb {
    fn before_batch(&mut self, _learn: &mut Learner, b: &BatchInfo, lrs: &mut [f64]) -> Result<()> {
        let unseen = b.batch.saturating_sub(self.finder.len());
        lrs.copy_from_slice(&self.finder.lrs_after(unseen));
        Ok(())
    }

    fn after_batch(&mut self, _learn: &mut Learner, b: &BatchEnd) -> Result<Flow> {
        let (smoothed, stop) = self.finder.on_batch_end(b.loss);
        if stop {
            // fastai stops before recording the batch that diverged.
            self.diverged = true;
            return Ok(Flow::Stop);
        }
        self.progress.batch(b.info.images, smoothed);
        if self.progress.live_due() {
            let view = self.view();
            self.progress.show(&view);
        }
        Ok(Flow::Continue)
    }
}

/// The stop button, Ctrl-C and [`Learner::stop_flag`]: the run ends after the current batch (or
/// before an epoch's first).
pub(crate) struct StopCb;

impl Callback for StopCb {
    fn before_epoch(&mut self, learn: &mut Learner, _epoch: usize) -> Result<Flow> {
        Ok(if learn.stop.take() { Flow::Stop } else { Flow::Continue })
    }

    fn after_step(&mut self, learn: &mut Learner, _b: &BatchInfo, _stepped: bool) -> Result<Flow> {
        Ok(if learn.stop.take() { Flow::Stop } else { Flow::Continue })
    }
}

/// A NaN or infinite loss, validation loss or metric is an error naming the epoch (and batch),
/// and the weights go back to the start of that epoch.
#[derive(Default)]
pub(crate) struct NanGuard {
    snap: Vec<(String, Tensor)>,
}

impl NanGuard {
    fn fail(&self, learn: &Learner, what: &str, value: f64, epoch: usize, batch: Option<usize>) -> Result<Flow> {
        learn.restore_vars(&self.snap);
        Err(Error::NonFinite { what: what.into(), value, epoch, batch })
    }
}

impl Callback for NanGuard {
    fn before_epoch(&mut self, learn: &mut Learner, _epoch: usize) -> Result<Flow> {
        self.snap = learn.snapshot();
        Ok(Flow::Continue)
    }

    fn after_loss(&mut self, learn: &mut Learner, b: &BatchInfo, loss: Option<f64>) -> Result<Flow> {
        match loss {
            Some(v) if !v.is_finite() => self.fail(learn, "loss", v, b.epoch, Some(b.batch)),
            _ => Ok(Flow::Continue),
        }
    }

    fn after_batch(&mut self, learn: &mut Learner, b: &BatchEnd) -> Result<Flow> {
        if b.loss.is_finite() {
            return Ok(Flow::Continue);
        }
        self.fail(learn, "loss", b.loss, b.info.epoch, Some(b.info.batch))
    }

    fn after_validate(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<()> {
        let names = std::iter::once("validation loss".to_string()).chain(learn.recorder.metric_names.iter().cloned());
        if let Some((what, &value)) =
            names.zip(std::iter::once(&row.val_loss).chain(&row.metrics)).find(|(_, v)| !v.is_finite())
        {
            self.fail(learn, &what, value, row.epoch, None)?;
        }
        Ok(())
    }
}

/// Mixed precision's gradient scaler (PyTorch's `GradScaler` around `backward` and `step`), when
/// the learner has one ([`Learner::set_amp`]).
#[derive(Default)]
pub(crate) struct AmpCb {
    found_inf: Option<Tensor>,
}

impl Callback for AmpCb {
    fn before_backward(&mut self, learn: &mut Learner, loss: Tensor) -> Result<Tensor> {
        Ok(match &learn.amp {
            Some(scaler) => scaler.scale_loss(&loss),
            None => loss,
        })
    }

    fn before_step(&mut self, learn: &mut Learner, _opt: &mut nn::Optimizer) -> Result<StepChoice> {
        let params = learn.model.vs.trainable_variables();
        let Some(scaler) = &mut learn.amp else { return Ok(StepChoice::Take) };
        let found_inf = scaler.unscale(&params);
        let ok = found_inf.double_value(&[0]) == 0.0;
        self.found_inf = Some(found_inf);
        Ok(if ok { StepChoice::Take } else { StepChoice::Skip })
    }

    fn after_step(&mut self, learn: &mut Learner, _b: &BatchInfo, stepped: bool) -> Result<Flow> {
        if let (Some(scaler), Some(found_inf)) = (&mut learn.amp, self.found_inf.take()) {
            note_amp_step(scaler, stepped, &found_inf);
        }
        Ok(Flow::Continue)
    }
}

fn note_amp_step(scaler: &mut GradScaler, stepped: bool, found_inf: &Tensor) {
    if stepped {
        scaler.steps += 1;
    } else {
        scaler.skipped += 1;
    }
    scaler.update(found_inf);
}

/// `fit`'s record: each batch's rate and smoothed loss and each epoch's row into the learner's
/// [`super::Recorder`] (the one place they go; the fit's report is read from it), the epoch
/// counted, and the learner's state written to `models_dir/last` after each epoch.
pub(crate) struct RecordCb {
    pub plan: FitInProgress,
}

impl Callback for RecordCb {
    fn after_batch(&mut self, learn: &mut Learner, b: &BatchEnd) -> Result<Flow> {
        learn.recorder.lrs.push(b.lr);
        learn.recorder.losses.push(b.smoothed);
        Ok(Flow::Continue)
    }

    fn after_validate(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<()> {
        learn.recorder.epochs.push(row.clone());
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<Flow> {
        let plan = FitInProgress { epochs_done: row.epoch + 1, ..self.plan.clone() };
        if let Err(err) = learn.write_last(Some(&plan)) {
            eprintln!("warning: the learner's state after epoch {} was not saved: {err}", row.epoch);
        }
        Ok(Flow::Continue)
    }
}

/// A fit in the background: what [`super::FitHandle::progress`] shows, copied from the learner's
/// recorder for the other thread.
pub(crate) struct PublishCb;

impl Callback for PublishCb {
    fn after_batch(&mut self, learn: &mut Learner, b: &BatchEnd) -> Result<Flow> {
        learn.publish(|live| {
            live.lrs.push(b.lr);
            live.losses.push(b.smoothed);
        });
        Ok(Flow::Continue)
    }

    fn after_epoch(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<Flow> {
        learn.publish(|live| live.epochs.push(row.clone()));
        Ok(Flow::Continue)
    }
}

/// `fit`'s progress: in fastdet's kernel one live output (bar, table so far, curves) redrawn
/// about every 2 s and at each epoch's end; elsewhere the epoch table printed as it grows (and
/// a bar on a terminal). What it shows is read from the learner's recorder from `first` on.
pub(crate) struct FitProgressCb {
    pub progress: BatchProgress,
    pub print: bool,
    pub n_epochs: usize,
    /// Where this fit starts in the recorder: (iterations, epochs).
    pub first: (usize, usize),
    pub start: Instant,
}

impl FitProgressCb {
    /// The fit so far as a report (no preview), from the recorder.
    pub fn report(&self, learn: &Learner) -> FitReport {
        let r = &learn.recorder;
        FitReport {
            metric_names: r.metric_names.clone(),
            lrs: r.lrs[self.first.0.min(r.lrs.len())..].to_vec(),
            losses: r.losses[self.first.0.min(r.losses.len())..].to_vec(),
            epochs: r.epochs[self.first.1.min(r.epochs.len())..].to_vec(),
            batches_per_epoch: learn.data.trn_dl.len(),
            secs: self.start.elapsed().as_secs_f64(),
            ..Default::default()
        }
    }

    fn redraw(&mut self, learn: &Learner) {
        let view = LiveView::Fit { bar: self.progress.bar_now(), report: self.report(learn) };
        self.progress.show(&view);
    }

    /// The table's header, where it is printed.
    pub fn header(&self, learn: &Learner) {
        if self.print {
            println!("{}", table_header(&learn.recorder.metric_names, false));
        }
    }
}

impl Callback for FitProgressCb {
    fn before_epoch(&mut self, _learn: &mut Learner, epoch: usize) -> Result<Flow> {
        self.progress.set_label(format!("epoch {epoch}/{}", self.n_epochs));
        Ok(Flow::Continue)
    }

    fn after_batch(&mut self, learn: &mut Learner, b: &BatchEnd) -> Result<Flow> {
        self.progress.batch(b.info.images, b.smoothed);
        if self.progress.live_due() {
            self.redraw(learn);
        }
        Ok(Flow::Continue)
    }

    fn after_epoch(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<Flow> {
        if self.print {
            println!("{}", table_line(None, row));
        }
        if self.progress.is_live() {
            self.redraw(learn);
        }
        Ok(Flow::Continue)
    }
}

/// The last layer group's rate of `lrs`.
pub(crate) fn last_lr(lrs: &[f64]) -> f64 {
    lrs.get(N_GROUPS - 1).or(lrs.last()).copied().unwrap_or(0.0)
}
