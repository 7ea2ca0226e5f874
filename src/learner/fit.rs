//! Training loops: fastai 0.7's `fit` and `lr_find`, stoppable after any batch (the stop button,
//! Ctrl-C, or [`FitHandle::stop`] for a fit running in the background), with progress while
//! they run and the learner's state written to `models_dir/last` after every epoch.

use super::best::BestCb;
use super::callback::{
    last_lr, AmpCb, BatchEnd, BatchInfo, Callback, EpochSeedCb, FinderCb, FitProgressCb, Flow, NanGuard, PublishCb,
    RecordCb, ScheduleCb, StepChoice, StopCb,
};
use super::progress::{Bar, BatchProgress, LiveView};
use super::record::{EpochRow, FitPreview, FitReport, LrFind, LrFinder, SmoothedLoss, PREVIEW_IMAGES};
use super::schedule::{FitOpts, Lrs, Schedule};
use super::state::FitInProgress;
use super::Learner;
use crate::error::{Error, Result};
use crate::stop::{SigintGuard, StopFlag, Stopped};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tch::{Kind, Tensor};

/// On CUDA, how many batches' losses `fit` reads back at once (one host wait per this many
/// batches instead of one per batch; the progress line moves in steps of this many).
pub const LOSS_READ_EVERY: usize = 16;
use std::time::Instant;

/// Batches' losses not yet looked at, each with what the loop needs when it is (`M`): those
/// still on the device are read together, with one wait for the device.
struct PendingLosses<M> {
    items: Vec<(M, PendingLoss)>,
}

enum PendingLoss {
    /// Already read (on the CPU each loss is read before its backward pass).
    Read(f64),
    OnDevice(Tensor),
}

impl<M> PendingLosses<M> {
    fn new() -> Self {
        PendingLosses { items: vec![] }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn push_read(&mut self, meta: M, value: f64) {
        self.items.push((meta, PendingLoss::Read(value)));
    }

    fn push(&mut self, meta: M, loss: &Tensor) {
        self.items.push((meta, PendingLoss::OnDevice(loss.detach())));
    }

    /// Every pending loss with its value, in batch order; empties the list.
    fn read(&mut self) -> Result<Vec<(M, f64)>> {
        let on_device: Vec<Tensor> = self
            .items
            .iter()
            .filter_map(|(_, l)| if let PendingLoss::OnDevice(t) = l { Some(t.to_kind(Kind::Double)) } else { None })
            .collect();
        let mut values = if on_device.is_empty() {
            vec![]
        } else {
            Vec::<f64>::try_from(Tensor::stack(&on_device, 0).to_device(tch::Device::Cpu))?
        }
        .into_iter();
        Ok(self
            .items
            .drain(..)
            .map(|(meta, loss)| match loss {
                PendingLoss::Read(v) => (meta, v),
                PendingLoss::OnDevice(_) => (meta, values.next().expect("one value per loss on the device")),
            })
            .collect())
    }
}

/// What one run of the training loop does ([`Learner::run`]).
pub(crate) struct RunSpec {
    /// The run's epochs (`fit`'s numbers: a resumed fit starts after the ones it had done).
    pub epochs: std::ops::Range<usize>,
    /// The base learning rate of each layer group (callbacks scale them per batch).
    pub lrs: Vec<f64>,
    /// Validate after each epoch, count it and call the epoch events (`fit`); `lr_find` does not.
    pub epochs_count: bool,
    /// Step with the learner's [`super::adam::Adam`] (`fit`, whose state `last/` saves) instead
    /// of `opt` (`lr_find`, whose steps are undone).
    pub own_adam: bool,
}

/// How a run ended: where a callback stopped it, if one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RunEnd {
    pub stopped: Option<Stopped>,
}

/// Call `f` on each callback in order until one says stop.
fn each(cbs: &mut [&mut dyn Callback], mut f: impl FnMut(&mut dyn Callback) -> Result<Flow>) -> Result<Flow> {
    for c in cbs.iter_mut() {
        if f(&mut **c)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

impl Learner {
    /// Add a callback to every later `fit`, `lr_find` and `fit_background` of this learner,
    /// after the built-in ones (see [`Callback`] for the events): `learn.add_callback(ClipGradNorm(1.0));`.
    pub fn add_callback(&mut self, cb: impl Callback + Send + 'static) {
        self.callbacks.push(Box::new(cb));
    }

    /// Remove the callbacks added with [`Learner::add_callback`].
    pub fn clear_callbacks(&mut self) {
        self.callbacks.clear();
    }

    /// The one training loop: the epochs of `spec`, each batch through forward, loss, backward
    /// and the optimiser's step with the events of [`Callback`] around them, `cbs` first, then
    /// the learner's own ([`Learner::add_callback`]). On CUDA the batches' losses stay on the
    /// GPU and are read [`LOSS_READ_EVERY`] at a time, so the host does not wait for the GPU at
    /// every batch; on the CPU each is read at once, before its backward pass.
    pub(crate) fn run(
        &mut self,
        spec: &RunSpec,
        opt: &mut tch::nn::Optimizer,
        cbs: &mut [&mut dyn Callback],
    ) -> Result<RunEnd> {
        let mut own = std::mem::take(&mut self.callbacks);
        let result = {
            let mut all: Vec<&mut dyn Callback> = Vec::with_capacity(cbs.len() + own.len());
            for c in cbs.iter_mut() {
                let c: &mut dyn Callback = &mut **c;
                all.push(c);
            }
            for c in own.iter_mut() {
                let c: &mut dyn Callback = &mut **c;
                all.push(c);
            }
            self.run_with(spec, opt, &mut all)
        };
        own.append(&mut self.callbacks);
        self.callbacks = own;
        result
    }

    fn run_with(
        &mut self,
        spec: &RunSpec,
        opt: &mut tch::nn::Optimizer,
        cbs: &mut [&mut dyn Callback],
    ) -> Result<RunEnd> {
        // fastai restarts the smoothed training loss at every fit and lr_find.
        let mut smoother = SmoothedLoss::default();
        let read_every = self.loss_read_every();
        for e in spec.epochs.clone() {
            let epoch_start = Instant::now();
            if each(cbs, |c| c.before_epoch(self, e))? == Flow::Stop {
                return Ok(RunEnd { stopped: Some(Stopped { epoch: e, batches: 0 }) });
            }
            let mut smoothed = f64::NAN;
            let mut pending = PendingLosses::new();
            let mut batches = self.data.trn_dl.clone().iter(self.epochs_done as u64).enumerate().peekable();
            while let Some((k, batch)) = batches.next() {
                let batch = batch?;
                let info = BatchInfo { epoch: e, batch: k, images: batch.indices.len() };
                let mut lrs = spec.lrs.clone();
                for c in cbs.iter_mut() {
                    c.before_batch(self, &info, &mut lrs)?;
                }
                for (g, lr) in lrs.iter().enumerate() {
                    opt.set_lr_group(g, *lr);
                }
                let loss = self.forward_loss(&batch)?;
                let read = if read_every == 1 { Some(f64::try_from(&loss)?) } else { None };
                if each(cbs, |c| c.after_loss(self, &info, read))? == Flow::Stop {
                    return Ok(RunEnd { stopped: Some(Stopped { epoch: e, batches: k }) });
                }
                let meta = (info, last_lr(&lrs));
                match read {
                    Some(v) => pending.push_read(meta, v),
                    None => pending.push(meta, &loss),
                }
                opt.zero_grad();
                let mut to_backward = loss;
                for c in cbs.iter_mut() {
                    to_backward = c.before_backward(self, to_backward)?;
                }
                to_backward.backward();
                let mut take = true;
                for c in cbs.iter_mut() {
                    if c.before_step(self, opt)? == StepChoice::Skip {
                        take = false;
                        break;
                    }
                }
                if take {
                    match (&mut self.adam, spec.own_adam) {
                        (Some(adam), true) => adam.step(&self.model.vs, &lrs),
                        _ => opt.step(),
                    }
                }
                let stop_now = each(cbs, |c| c.after_step(self, &info, take))? == Flow::Stop;
                if pending.len() < read_every && !stop_now && batches.peek().is_some() {
                    continue;
                }
                for ((info, lr), loss) in pending.read()? {
                    smoothed = smoother.add(loss);
                    let end = BatchEnd { info, loss, smoothed, lr };
                    if each(cbs, |c| c.after_batch(self, &end))? == Flow::Stop {
                        return Ok(RunEnd { stopped: Some(Stopped { epoch: e, batches: info.batch + 1 }) });
                    }
                }
                if stop_now {
                    return Ok(RunEnd { stopped: Some(Stopped { epoch: e, batches: k + 1 }) });
                }
            }
            if !spec.epochs_count {
                continue;
            }
            let (val_loss, metrics) = self.validate(&self.data.val_dl)?;
            let row =
                EpochRow { epoch: e, trn_loss: smoothed, val_loss, metrics, secs: epoch_start.elapsed().as_secs_f64() };
            for c in cbs.iter_mut() {
                c.after_validate(self, &row)?;
            }
            self.epochs_done += 1;
            if each(cbs, |c| c.after_epoch(self, &row))? == Flow::Stop {
                return Ok(RunEnd { stopped: Some(Stopped { epoch: e + 1, batches: 0 }) });
            }
        }
        Ok(RunEnd::default())
    }

    /// fastai 0.7's `fit(lrs, n_cycle, cycle_len, cycle_mult, use_clr)`. Prints the epoch table
    /// as it goes (in fastdet's kernel: one live output with a bar, the table and the curves),
    /// writes the learner's state to `models_dir/last` after every epoch, and returns a
    /// [`FitReport`] (in a notebook: the table and the loss and learning-rate curves). The stop
    /// button (or Ctrl-C, or [`Learner::stop_flag`]) ends it after the current batch: the
    /// report then says where, and the learner keeps what it learnt.
    pub fn fit(&mut self, lrs: impl Into<Lrs>, n_cycle: usize, opts: FitOpts) -> Result<FitReport> {
        self.fit_from(FitInProgress { lrs: lrs.into(), n_cycle, opts, epochs_done: 0 })
    }

    /// Train the epochs of `plan` from `plan.epochs_done` on (the schedule continues where it
    /// was): a fit from its start, or one resumed by [`Learner::resume_fit`].
    pub(crate) fn fit_from(&mut self, plan: FitInProgress) -> Result<FitReport> {
        let FitInProgress { ref lrs, n_cycle, ref opts, epochs_done: first } = plan;
        let lrs = lrs.per_group()?;
        let nb = self.data.trn_dl.len();
        if nb == 0 {
            return Err(Error::Invalid("fit: the training set is empty".into()));
        }
        opts.validate(n_cycle, Some(nb))
            .map_err(|(field, problem)| Error::Invalid(format!("fit: {field}: {problem}")))?;
        let n_epochs = opts.epochs(n_cycle);
        let mut sched = match (opts.cycle_len, opts.use_clr) {
            (None, _) => Schedule::Constant,
            (Some(cl), Some((div, cut))) => Schedule::circular(nb * cl, div, cut),
            (Some(cl), None) => Schedule::cos_anneal(nb * cl, opts.cycle_mult.unwrap_or(1)),
        };
        for _ in 0..first * nb {
            sched.next_mult();
        }
        let mut opt = self.optimizer(&lrs)?;
        let _sigint = SigintGuard::install();
        let quiet = self.live.is_some();
        let start = Instant::now();
        let first_record = (self.recorder.lrs.len(), self.recorder.epochs.len());
        let empty =
            FitReport { metric_names: self.recorder.metric_names.clone(), batches_per_epoch: nb, ..Default::default() };
        let mut progress = FitProgressCb {
            progress: BatchProgress::new(nb * n_epochs.saturating_sub(first), "fit", quiet, |bar| LiveView::Fit {
                bar,
                report: empty,
            }),
            print: false,
            n_epochs,
            first: first_record,
            start,
        };
        // In fastdet's kernel the live output holds the table; elsewhere it is printed.
        progress.print = !quiet && !progress.progress.is_live();
        progress.header(self);
        let (mut schedule, mut stop, mut guard, mut amp, mut seed) =
            (ScheduleCb { sched }, StopCb, NanGuard::default(), AmpCb::default(), EpochSeedCb);
        let mut record = RecordCb { plan: plan.clone() };
        let mut publish = PublishCb;
        let mut best = BestCb::new(self, opts, n_epochs, first)?;
        let mut cbs: Vec<&mut dyn Callback> =
            vec![&mut schedule, &mut guard, &mut amp, &mut stop, &mut seed, &mut record];
        if quiet {
            cbs.push(&mut publish);
        }
        cbs.push(&mut progress);
        // Last of the built-in ones: an early stop comes after the epoch is recorded and shown.
        if let Some(b) = best.as_mut() {
            cbs.push(b);
        }
        // A fresh optimiser per fit, as fastai builds one; a resumed fit continues the state
        // `last/` saved (restore_last put it on the learner).
        if first == 0 || self.adam.is_none() {
            self.adam = Some(super::adam::Adam::default());
        }
        let spec = RunSpec { epochs: first..n_epochs, lrs: lrs.clone(), epochs_count: true, own_adam: true };
        let end = self.run(&spec, &mut opt, &mut cbs);
        // The optimiser's state (twice the weights' memory) lives as long as its fit: last/ has
        // it for a resume.
        self.adam = None;
        let end = end?;
        let mut report = progress.report(self);
        report.stopped = end.stopped;
        if let Some(b) = best {
            report.best = b.best().map(Box::new);
            if b.stopped_early.is_some() {
                // Not an interruption: the fit is complete.
                report.stopped = None;
                report.early_stop = b.stopped_early;
            }
        }
        report.secs = start.elapsed().as_secs_f64();
        report.preview = self.preview().ok().map(|p| Arc::new(Mutex::new(p)));
        if let Some(sc) = self.amp() {
            report.notes.push(format!(
                "mixed precision: loss scale {}, {} of {} steps skipped (non-finite gradients)",
                sc.scale(),
                sc.skipped,
                sc.skipped + sc.steps
            ));
        }
        if self.device().is_cuda() {
            report.notes.push(format!(
                "GPU memory in use: {}",
                crate::device::gpu_memory_used().unwrap_or_else(|| "unknown (no nvidia-smi)".into())
            ));
        }
        if progress.print {
            for n in report.early_stop.iter().chain(&report.notes) {
                println!("{n}");
            }
            if let Some(b) = &report.best {
                println!("{b}");
            }
        }
        if let (Some(st), true) = (report.stopped, progress.print) {
            println!(
                "stopped during epoch {} after {} batches; the learner keeps the weights trained so far",
                st.epoch, st.batches
            );
        }
        // The live output becomes the report (summary, table, curves, preview).
        report.shown_live = progress.progress.is_live();
        progress.progress.finish(&report);
        report.live_draw_secs = progress.progress.drawing_secs();
        self.publish(|live| live.stopped = report.stopped);
        Ok(report)
    }

    /// The first validation images and the model's outputs on them.
    fn preview(&self) -> Result<FitPreview> {
        let n = self.data.val_dl.dataset.len().min(PREVIEW_IMAGES);
        let batch = self.data.val_dl.batch_of(&(0..n).collect::<Vec<_>>())?;
        let out = self.predict_batch(&batch.x).to_device(tch::Device::Cpu);
        Ok(FitPreview { batch, out, spec: self.model.spec.clone() })
    }

    /// Update what a fit in the background shows.
    pub(crate) fn publish(&self, f: impl FnOnce(&mut FitReport)) {
        if let Some(live) = &self.live {
            f(&mut live.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// fastai's `lr_find(start_lr, end_lr)`: over at most one epoch the learning rate grows
    /// exponentially from `start` to `end`; stops when the smoothed loss is NaN or over 4x the
    /// best (after 10 iterations), or when a stop is asked for; the weights are restored
    /// afterwards. Prints fastai v2's suggested learning rates ([`LrFind::suggestion`]).
    pub fn lr_find(&mut self, start: impl Into<Lrs>, end: f64) -> Result<LrFind> {
        let start = start.into().per_group()?;
        let snap = self.snapshot();
        let nb = self.data.trn_dl.len().max(1);
        let mut opt = self.optimizer(&start)?;
        let _sigint = SigintGuard::install();
        let finder = LrFinder::new(&start, end, nb);
        let progress =
            BatchProgress::new(nb, "lr_find", false, |bar| LiveView::LrFind { bar, lrs: vec![], losses: vec![] });
        let mut find = FinderCb { finder, diverged: false, progress };
        let (mut stop, mut amp) = (StopCb, AmpCb::default());
        // As in `fit`: on CUDA the losses are read LOSS_READ_EVERY batches at a time (the
        // learning rates follow the batch count, not the losses), so a divergence is seen up to
        // that many batches late: those extra steps are undone with the rest when the weights
        // are restored, and the record stops where fastai's would. The learning rates the data
        // epoch sees are those of the learner's epoch count (lr_find does not count one).
        let spec = RunSpec { epochs: 0..1, lrs: start.clone(), epochs_count: false, own_adam: false };
        let result = self.run(&spec, &mut opt, &mut [&mut find, &mut amp, &mut stop]);
        self.restore_vars(&snap);
        let end = match result {
            Ok(end) => end,
            Err(e) => {
                find.progress.finish(&LiveView::LrFind { bar: find.progress.bar_now(), lrs: vec![], losses: vec![] });
                return Err(e);
            }
        };
        if let (Some(st), false) = (end.stopped, find.diverged) {
            println!("lr_find stopped after {} batches", st.batches);
        }
        let mut found = find.finder.finish();
        found.shown_live = find.progress.is_live();
        find.progress.finish(&found);
        if let Some(s) = found.suggestion() {
            println!("lr_find: suggested learning rates {:.2e} (valley), {:.2e} (steepest descent)", s.valley, s.steep);
        }
        Ok(found)
    }

    /// `fit` on a thread of its own: the cell returns at once with a [`FitHandle`] whose
    /// `progress()` shows the epoch table and loss curve so far, `stop()` ends the fit after the
    /// current batch, and `wait()` gives the learner back. (Nothing is printed while it runs.)
    pub fn fit_background(mut self, lrs: impl Into<Lrs>, n_cycle: usize, opts: FitOpts) -> FitHandle {
        let nb = self.data.trn_dl.len();
        let (total, bs) = (nb * opts.epochs(n_cycle), self.data.trn_dl.bs);
        let live = Arc::new(Mutex::new(FitReport {
            metric_names: self.recorder.metric_names.clone(),
            batches_per_epoch: nb,
            ..Default::default()
        }));
        self.live = Some(live.clone());
        let stop = self.stop_flag();
        stop.clear();
        let lrs = lrs.into();
        let started = Instant::now();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = done.clone();
        let (published, t0) = (live.clone(), started);
        let thread = std::thread::spawn(move || {
            let result = self.fit(lrs, n_cycle, opts);
            self.live = None;
            published.lock().unwrap_or_else(|e| e.into_inner()).secs = t0.elapsed().as_secs_f64();
            finished.store(true, std::sync::atomic::Ordering::Release);
            (self, result)
        });
        FitHandle { stop, live, thread, started, total, bs, done }
    }
}

/// A fit running in the background ([`Learner::fit_background`]).
pub struct FitHandle {
    stop: StopFlag,
    live: Arc<Mutex<FitReport>>,
    thread: JoinHandle<(Learner, Result<FitReport>)>,
    started: Instant,
    /// Batches of the whole fit, and images per batch (for the progress bar).
    total: usize,
    bs: usize,
    /// Set by the fit's thread when the fit has ended.
    done: Arc<std::sync::atomic::AtomicBool>,
}

/// The bar of a fit in the background from what it published.
fn background_bar(r: &FitReport, started: Instant, total: usize, bs: usize, finished: bool) -> Bar {
    let n = r.losses.len();
    let elapsed = if finished { r.secs } else { started.elapsed().as_secs_f64() };
    Bar {
        label: if finished { "finished".into() } else { format!("in the background, epoch {}", r.epochs.len()) },
        done: n,
        total,
        images_per_s: (n * bs) as f64 / elapsed.max(1e-9),
        elapsed,
        left: if n == 0 { f64::NAN } else { elapsed / n as f64 * total.saturating_sub(n) as f64 },
    }
}

impl FitHandle {
    /// Ask the fit to end after its current batch (then [`FitHandle::wait`]).
    pub fn stop(&self) {
        self.stop.request();
    }

    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// The epochs and iterations so far (shows the table and the curves in a notebook).
    pub fn progress(&self) -> FitReport {
        let mut r = self.live.lock().unwrap_or_else(|e| e.into_inner()).clone();
        r.secs = self.started.elapsed().as_secs_f64();
        r
    }

    /// The progress bar's numbers now (batches done of all, images/s, elapsed, time left).
    pub fn bar(&self) -> Bar {
        let r = self.live.lock().unwrap_or_else(|e| e.into_inner());
        background_bar(&r, self.started, self.total, self.bs, !self.is_running())
    }

    /// In fastdet's kernel: a live output of this fit in the running cell (bar, table, curve),
    /// redrawn about every 2 s by a thread of its own until the fit ends, when it becomes the
    /// fit's table and curves; the cell returns at once, and the output goes on updating while
    /// other cells run. Elsewhere it shows the progress so far, once.
    pub fn show_live(&self) {
        let live = crate::notebook::display_live(&LiveView::Fit { bar: self.bar(), report: self.progress() });
        if !crate::notebook::is_live() {
            return;
        }
        let (report, started, total, bs, done) =
            (self.live.clone(), self.started, self.total, self.bs, self.done.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(super::progress::LIVE_EVERY);
            let finished = done.load(std::sync::atomic::Ordering::Acquire);
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let bar = background_bar(&r, started, total, bs, finished);
            if finished {
                live.update(&r);
                break;
            }
            r.secs = bar.elapsed;
            live.update(&LiveView::Fit { bar, report: r });
        });
    }

    /// Wait for the fit to end; the learner, and what the fit returned.
    pub fn join(self) -> Result<(Learner, Result<FitReport>)> {
        self.thread.join().map_err(|_| Error::Invalid("the fit in the background panicked; its learner is lost".into()))
    }

    /// Wait for the fit to end and take the learner back, printing the fit's table (or the
    /// error that ended it: a NaN loss leaves the weights of the start of that epoch).
    pub fn wait(self) -> Result<Learner> {
        let (learn, result) = self.join()?;
        match result {
            Ok(report) => println!("{}", report.table()),
            Err(e) => println!("the fit ended with an error: {e}"),
        }
        Ok(learn)
    }
}
