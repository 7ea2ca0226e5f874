//! Training loops: fastai 0.7's `fit` and `lr_find`, stoppable after any batch (the stop button,
//! Ctrl-C, or [`FitHandle::stop`] for a fit running in the background), with progress while
//! they run and the learner's state written to `models_dir/last` after every epoch.

use super::progress::{Bar, BatchProgress, LiveView};
use super::record::{
    table_header, table_line, EpochRow, FitPreview, FitReport, LrFind, LrFinder, SmoothedLoss, PREVIEW_IMAGES,
};
use super::schedule::{FitOpts, Lrs, Schedule};
use super::state::FitInProgress;
use super::Learner;
use crate::error::{Error, Result};
use crate::model::N_GROUPS;
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

impl Learner {
    /// fastai 0.7's `fit(lrs, n_cycle, cycle_len, cycle_mult, use_clr)`. Prints the epoch table
    /// as it goes (and a progress line every few seconds), writes the learner's state to
    /// `models_dir/last` after every epoch, and returns a [`FitReport`] (in a notebook: the table
    /// and the loss and learning-rate curves). The stop button (or Ctrl-C, or
    /// [`Learner::stop_flag`]) ends it after the current batch: the report then says where, and
    /// the learner keeps what it learnt.
    pub fn fit(&mut self, lrs: impl Into<Lrs>, n_cycle: usize, opts: FitOpts) -> Result<FitReport> {
        self.fit_from(FitInProgress { lrs: lrs.into(), n_cycle, opts, epochs_done: 0 })
    }

    /// Train the epochs of `plan` from `plan.epochs_done` on (the schedule continues where it
    /// was): a fit from its start, or one resumed by [`Learner::resume_fit`].
    pub(crate) fn fit_from(&mut self, plan: FitInProgress) -> Result<FitReport> {
        let FitInProgress { ref lrs, n_cycle, opts, epochs_done: first } = plan;
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
        // fastai restarts the smoothed training loss at every fit.
        let mut smoother = SmoothedLoss::default();
        let mut report =
            FitReport { metric_names: self.recorder.metric_names.clone(), batches_per_epoch: nb, ..Default::default() };
        let start = Instant::now();
        let fit_view = |bar: Bar, report: &FitReport| LiveView::Fit {
            bar,
            report: FitReport { secs: start.elapsed().as_secs_f64(), preview: None, ..report.clone() },
        };
        let mut progress =
            BatchProgress::new(nb * n_epochs.saturating_sub(first), "fit", quiet, |bar| fit_view(bar, &report));
        // In fastdet's kernel the live output holds the table; elsewhere it is printed.
        let print = !quiet && !progress.is_live();
        if print {
            println!("{}", table_header(&self.recorder.metric_names, false));
        }
        'epochs: for e in first..n_epochs {
            let epoch_start = Instant::now();
            let epoch = self.epochs_done;
            let snap = self.snapshot();
            progress.set_label(format!("epoch {e}/{n_epochs}"));
            let mut smoothed = f64::NAN;
            if self.stop.take() {
                report.stopped = Some(Stopped { epoch: e, batches: 0 });
                break;
            }
            // On CUDA the batches' losses stay on the GPU and are read LOSS_READ_EVERY at a
            // time, so the host does not wait for the GPU at every batch; on the CPU each is read
            // at once (before its backward pass: a non-finite loss stops the fit untouched).
            let read_every = self.loss_read_every();
            let mut pending = PendingLosses::new();
            let mut batches = self.data.trn_dl.clone().iter(epoch as u64).enumerate().peekable();
            while let Some((k, batch)) = batches.next() {
                let batch = batch?;
                let mult = sched.next_mult();
                for (g, lr) in lrs.iter().enumerate() {
                    opt.set_lr_group(g, lr * mult);
                }
                let loss = self.forward_loss(&batch)?;
                let meta = (k, batch.indices.len(), lrs[N_GROUPS - 1] * mult);
                if read_every == 1 {
                    let value = f64::try_from(&loss)?;
                    if !value.is_finite() {
                        self.restore_vars(&snap);
                        return Err(Error::NonFinite { what: "loss".into(), value, epoch: e, batch: Some(k) });
                    }
                    pending.push_read(meta, value);
                } else {
                    pending.push(meta, &loss);
                }
                self.backward_step(&mut opt, &loss)?;
                let stop_now = self.stop.take();
                if pending.len() < read_every && !stop_now && batches.peek().is_some() {
                    continue;
                }
                for ((k, bs, lr), loss) in pending.read()? {
                    if !loss.is_finite() {
                        self.restore_vars(&snap);
                        return Err(Error::NonFinite { what: "loss".into(), value: loss, epoch: e, batch: Some(k) });
                    }
                    smoothed = smoother.add(loss);
                    self.recorder.lrs.push(lr);
                    self.recorder.losses.push(smoothed);
                    report.lrs.push(lr);
                    report.losses.push(smoothed);
                    self.publish(|live| {
                        live.lrs.push(lr);
                        live.losses.push(smoothed);
                    });
                    progress.batch(bs, smoothed);
                }
                if progress.live_due() {
                    let view = fit_view(progress.bar_now(), &report);
                    progress.show(&view);
                }
                if stop_now {
                    report.stopped = Some(Stopped { epoch: e, batches: k + 1 });
                    break 'epochs;
                }
            }
            let (val_loss, metrics) = self.validate(&self.data.val_dl)?;
            let names =
                std::iter::once("validation loss".to_string()).chain(self.recorder.metric_names.iter().cloned());
            if let Some((what, &value)) =
                names.zip(std::iter::once(&val_loss).chain(&metrics)).find(|(_, v)| !v.is_finite())
            {
                self.restore_vars(&snap);
                return Err(Error::NonFinite { what, value, epoch: e, batch: None });
            }
            let row =
                EpochRow { epoch: e, trn_loss: smoothed, val_loss, metrics, secs: epoch_start.elapsed().as_secs_f64() };
            if print {
                println!("{}", table_line(None, &row));
            }
            self.recorder.epochs.push(row.clone());
            report.epochs.push(row.clone());
            if progress.is_live() {
                let view = fit_view(progress.bar_now(), &report);
                progress.show(&view);
            }
            self.publish(|live| live.epochs.push(row));
            self.epochs_done += 1;
            let plan = FitInProgress { epochs_done: e + 1, ..plan.clone() };
            if let Err(err) = self.write_last(Some(&plan)) {
                eprintln!("warning: the learner's state after epoch {e} was not saved: {err}");
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
        if print {
            for n in &report.notes {
                println!("{n}");
            }
        }
        if let (Some(st), true) = (report.stopped, print) {
            println!(
                "stopped during epoch {} after {} batches; the learner keeps the weights trained so far",
                st.epoch, st.batches
            );
        }
        // The live output becomes the report (summary, table, curves, preview).
        report.shown_live = progress.is_live();
        progress.finish(&report);
        report.live_draw_secs = progress.drawing_secs();
        self.publish(|live| live.stopped = report.stopped);
        Ok(report)
    }

    /// The first validation images and the model's outputs on them.
    fn preview(&self) -> Result<FitPreview> {
        let n = self.data.val_dl.dataset.len().min(PREVIEW_IMAGES);
        let batch = self.data.val_dl.batch_of(&(0..n).collect::<Vec<_>>())?;
        let out = self.predict_batch(&batch.x).to_device(tch::Device::Cpu);
        Ok(FitPreview { batch, out, loss: self.loss.clone(), classes: self.data.classes.clone() })
    }

    /// Update what a fit in the background shows.
    fn publish(&self, f: impl FnOnce(&mut FitReport)) {
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
        let mut finder = LrFinder::new(&start, end, nb);
        let mut opt = self.optimizer(&start)?;
        let _sigint = SigintGuard::install();
        let view = |bar: Bar, finder: &LrFinder| {
            let f = finder.so_far();
            LiveView::LrFind { bar, lrs: f.lrs, losses: f.losses }
        };
        let mut progress = BatchProgress::new(nb, "lr_find", false, |bar| view(bar, &finder));
        // As in `fit`: on CUDA the losses are read LOSS_READ_EVERY batches at a time (the
        // learning rates follow the batch count, not the losses), so a divergence is seen up to
        // that many batches late: those extra steps are undone with the rest when the weights
        // are restored, and the record stops where fastai's would.
        let read_every = self.loss_read_every();
        let result = (|| -> Result<()> {
            let mut pending = PendingLosses::new();
            let mut batches = self.data.trn_dl.clone().iter(self.epochs_done as u64).enumerate().peekable();
            while let Some((i, batch)) = batches.next() {
                let batch = batch?;
                // The rates of batch `i`: the finder has seen the losses of all but `pending`.
                for (g, lr) in finder.lrs_after(pending.len()).into_iter().enumerate() {
                    opt.set_lr_group(g, lr);
                }
                if read_every == 1 {
                    pending.push_read(batch.indices.len(), self.step(&mut opt, &batch)?);
                } else {
                    let loss = self.forward_loss(&batch)?;
                    self.backward_step(&mut opt, &loss)?;
                    pending.push(batch.indices.len(), &loss);
                }
                let stop_now = self.stop.take();
                if pending.len() < read_every && !stop_now && batches.peek().is_some() {
                    continue;
                }
                for (bs, loss) in pending.read()? {
                    let (smoothed, stop) = finder.on_batch_end(loss);
                    if stop {
                        // fastai stops before recording the batch that diverged.
                        return Ok(());
                    }
                    progress.batch(bs, smoothed);
                }
                if progress.live_due() {
                    let v = view(progress.bar_now(), &finder);
                    progress.show(&v);
                }
                if stop_now {
                    println!("lr_find stopped after {} batches", i + 1);
                    break;
                }
            }
            Ok(())
        })();
        self.restore_vars(&snap);
        if let Err(e) = result {
            progress.finish(&LiveView::LrFind { bar: progress.bar_now(), lrs: vec![], losses: vec![] });
            return Err(e);
        }
        let mut found = finder.finish();
        found.shown_live = progress.is_live();
        progress.finish(&found);
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
