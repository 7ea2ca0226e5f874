//! What training records: the epoch table ([`EpochRow`], one formatter for every table of the
//! crate), the per-iteration curves ([`Recorder`]), fastai's smoothed loss, what one `fit`
//! returns ([`FitReport`]) and what `lr_find` returns ([`LrFind`], with its suggested rates).

use crate::stop::Stopped;
use serde::{Deserialize, Serialize};

/// One row of the epoch table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub trn_loss: f64,
    pub val_loss: f64,
    pub metrics: Vec<f64>,
    /// Seconds the epoch took (training and validation).
    #[serde(default)]
    pub secs: f64,
}

/// What training recorded: per iteration (lr of the last group, smoothed loss) and per epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recorder {
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    pub epochs: Vec<EpochRow>,
    pub metric_names: Vec<String>,
}

impl Recorder {
    /// The epoch table as text.
    pub fn table(&self) -> String {
        epoch_table(&self.metric_names, self.epochs.iter().map(|r| (None, r)))
    }
}

/// The header of the epoch table: `[stage] epoch trn_loss val_loss <metrics> time` (with a
/// stage column for `fastdet train`'s runs).
pub fn table_header(metric_names: &[String], with_stage: bool) -> String {
    let mut s = if with_stage { format!("{:>5} ", "stage") } else { String::new() };
    s += &format!("{:>5} {:>10} {:>10}", "epoch", "trn_loss", "val_loss");
    for m in metric_names {
        s += &format!(" {m:>12}");
    }
    s + &format!(" {:>8}", "time")
}

/// One line of the epoch table (see [`table_header`]).
pub fn table_line(stage: Option<usize>, r: &EpochRow) -> String {
    let mut s = stage.map(|k| format!("{k:>5} ")).unwrap_or_default();
    s += &format!("{:>5} {:>10.6} {:>10.6}", r.epoch, r.trn_loss, r.val_loss);
    for v in &r.metrics {
        s += &format!(" {v:>12.6}");
    }
    s + &format!(" {:>8}", fmt_secs(r.secs))
}

/// The whole table: the header, then a line per row (with its stage, if any).
pub fn epoch_table<'a>(metric_names: &[String], rows: impl Iterator<Item = (Option<usize>, &'a EpochRow)>) -> String {
    let mut rows = rows.peekable();
    let with_stage = rows.peek().is_some_and(|r| r.0.is_some());
    let mut s = table_header(metric_names, with_stage);
    for (stage, r) in rows {
        s += "\n";
        s += &table_line(stage, r);
    }
    s
}

/// `m:ss` (or `h:mm:ss`), as fastai prints times.
pub fn fmt_secs(secs: f64) -> String {
    let t = secs.max(0.0).round() as u64;
    if t >= 3600 {
        format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    } else {
        format!("{}:{:02}", t / 60, t % 60)
    }
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

/// A few validation images and the model's outputs on them after a fit, to draw beside their
/// ground truth.
pub struct FitPreview {
    pub batch: crate::data::Batch,
    pub out: crate::model::ModelOutput,
    /// What the model is (classes, size, how its output reads).
    pub spec: crate::model::ModelSpec,
}

impl std::fmt::Debug for FitPreview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FitPreview({} images)", self.batch.indices.len())
    }
}

/// Validation images in a fit's preview.
pub const PREVIEW_IMAGES: usize = 4;

/// What one `fit` did: its epoch rows, its iterations' curves, and whether it was stopped.
/// In a notebook it shows the epoch table, the loss and learning-rate curves and a few
/// validation images with ground truth beside prediction, as one output.
#[derive(Debug, Clone, Default)]
pub struct FitReport {
    pub metric_names: Vec<String>,
    /// The epochs this fit completed.
    pub epochs: Vec<EpochRow>,
    /// Learning rate (last group) and smoothed loss of each iteration of this fit.
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    /// Set when a stop request ended the fit early.
    pub stopped: Option<Stopped>,
    pub secs: f64,
    /// The first [`PREVIEW_IMAGES`] validation images and the model's outputs after the fit.
    pub preview: Option<std::sync::Arc<std::sync::Mutex<FitPreview>>>,
    /// Where it ran, when worth saying: the gradient scaler's state with mixed precision, the
    /// GPU memory in use after a fit on CUDA.
    pub notes: Vec<String>,
    /// Training batches per epoch (where each epoch's validation loss sits on the curve).
    pub batches_per_epoch: usize,
    /// Set when the fit's live output already shows this report (fastdet's kernel): the cell's
    /// value then adds one line instead of a second copy.
    pub shown_live: bool,
    /// Seconds of the fit spent drawing and sending its live output (0 without one).
    pub live_draw_secs: f64,
    /// With [`super::FitOpts::keep_best`] or `early_stop`: the best epoch by the watched column
    /// and where its weights are (boxed: the report travels in the live view's enum).
    pub best: Option<Box<super::BestEpoch>>,
    /// Why the fit stopped early ([`super::FitOpts::early_stop`]), when it did.
    pub early_stop: Option<String>,
}

impl FitReport {
    /// `[val_loss, metrics...]` after the last completed epoch (empty if none completed).
    pub fn last(&self) -> Vec<f64> {
        self.epochs
            .last()
            .map(|r| std::iter::once(r.val_loss).chain(r.metrics.iter().copied()).collect())
            .unwrap_or_default()
    }

    /// One line: the epochs trained, the time, and the last validation numbers.
    pub fn summary(&self) -> String {
        let mut s = format!("fit: {} epochs in {}", self.epochs.len(), fmt_secs(self.secs));
        if let Some(r) = self.epochs.last() {
            s += &format!(", val_loss {:.6}", r.val_loss);
            for (n, v) in self.metric_names.iter().zip(&r.metrics) {
                s += &format!(", {n} {v:.6}");
            }
        }
        if let Some(st) = self.stopped {
            s += &format!("; stopped during epoch {} after {} batches", st.epoch, st.batches);
        }
        if let Some(e) = &self.early_stop {
            s += &format!("; {e}");
        }
        if let Some(b) = &self.best {
            s += &format!("; {b}");
        }
        for n in &self.notes {
            s += &format!("; {n}");
        }
        s
    }

    /// The epoch table, and a line saying where a stopped fit stopped.
    pub fn table(&self) -> String {
        let mut s = epoch_table(&self.metric_names, self.epochs.iter().map(|r| (None, r)));
        if let Some(st) = self.stopped {
            s += &format!(
                "\nstopped during epoch {} after {} batches; the learner keeps the weights trained so far ({} epochs complete)",
                st.epoch,
                st.batches,
                self.epochs.len()
            );
        }
        if let Some(e) = &self.early_stop {
            s += &format!("\n{e}");
        }
        if let Some(b) = &self.best {
            s += &format!("\n{b}");
        }
        s
    }
}

/// The result of `lr_find`: learning rates (of the last group) and smoothed losses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LrFind {
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    /// Points left out at the start and end of the plot and of the suggestions (fastai's
    /// `sched.plot(n_skip, n_skip_end)`: 10 and 5 by default).
    pub n_skip: usize,
    pub n_skip_end: usize,
    /// Set when the run's live output already shows this plot (fastdet's kernel).
    pub shown_live: bool,
}

/// fastai 0.7's `LR_Finder` as `lr_find` runs it, one batch at a time, without the model: the
/// rate of batch `i` is `start * (end / start_last)^(i / nb)` per layer group; after each batch
/// the raw loss is smoothed as `fit` does ([`SmoothedLoss`]) and the finder stops, before
/// recording that batch, when the smoothed loss is NaN or over 4x the best so far. The best
/// starts at fastai's `1e9` and only follows the loss after iteration 10.
#[derive(Debug, Clone)]
pub struct LrFinder {
    start: Vec<f64>,
    ratio: f64,
    nb: usize,
    i: usize,
    smoother: SmoothedLoss,
    best: f64,
    found: LrFind,
}

/// fastai's `LR_Finder.on_train_begin`: `self.best = 1e9`.
const FINDER_BEST0: f64 = 1e9;

impl LrFinder {
    /// `start`: the rate of each layer group at the first batch; `end`: the last group's rate
    /// one epoch (`nb` batches) later.
    pub fn new(start: &[f64], end: f64, nb: usize) -> Self {
        let last = start.last().copied().unwrap_or(1.0);
        Self {
            start: start.to_vec(),
            ratio: end / last,
            nb: nb.max(1),
            i: 0,
            smoother: SmoothedLoss::default(),
            best: FINDER_BEST0,
            found: LrFind { n_skip: 10, n_skip_end: 5, ..Default::default() },
        }
    }

    /// The rates of the next batch, one per layer group.
    pub fn lrs(&self) -> Vec<f64> {
        self.lrs_after(0)
    }

    /// The rates of the batch `k` batches after the next one (stepped before the finder has
    /// seen the losses in between: `lr_find` on a GPU reads them a few at a time).
    pub fn lrs_after(&self, k: usize) -> Vec<f64> {
        let mult = self.ratio.powf((self.i + k) as f64 / self.nb as f64);
        self.start.iter().map(|l| l * mult).collect()
    }

    /// The batch just stepped had raw loss `loss`: returns the smoothed loss and whether to stop
    /// (that batch is then not recorded).
    pub fn on_batch_end(&mut self, loss: f64) -> (f64, bool) {
        let smoothed = self.smoother.add(loss);
        if smoothed.is_nan() || smoothed > self.best * 4.0 {
            return (smoothed, true);
        }
        if smoothed < self.best && self.i > 10 {
            self.best = smoothed;
        }
        self.found.lrs.push(self.lrs().last().copied().unwrap_or(0.0));
        self.found.losses.push(smoothed);
        self.i += 1;
        (smoothed, false)
    }

    /// Batches recorded so far.
    pub fn len(&self) -> usize {
        self.found.lrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.found.lrs.is_empty()
    }

    pub fn finish(self) -> LrFind {
        self.found
    }

    /// The learning rates and losses recorded so far.
    pub fn so_far(&self) -> LrFind {
        self.found.clone()
    }
}

/// Learning rates `lr_find` suggests, as fastai v2 computes them on the smoothed losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSuggestion {
    /// `steep`: where the loss falls fastest against `log(lr)`.
    pub steep: f64,
    /// `valley`: in the longest stretch where the loss keeps falling, a point about halfway
    /// down its first two thirds (fastai v2's default suggestion).
    pub valley: f64,
}

impl LrFind {
    /// The points plotted and used for suggestions: fastai 0.7's `sched.plot(n_skip,
    /// n_skip_end)` plots `lrs[n_skip:-(n_skip_end+1)]`, so the last `n_skip_end + 1` points go
    /// (all of them are kept when too few are left).
    pub fn shown(&self) -> (&[f64], &[f64]) {
        let end = self.lrs.len().saturating_sub(self.n_skip_end + 1);
        if self.n_skip + 2 <= end {
            (&self.lrs[self.n_skip..end], &self.losses[self.n_skip..end])
        } else {
            (&self.lrs[..], &self.losses[..])
        }
    }

    /// The same result plotted and suggested with other skips (the lesson's `sched.plot(1)` is
    /// `with_skip(1, 5)`).
    pub fn with_skip(&self, n_skip: usize, n_skip_end: usize) -> Self {
        Self { n_skip, n_skip_end, ..self.clone() }
    }

    /// fastai v2's `steep` and `valley` on the shown points; `None` with fewer than 2 points.
    pub fn suggestion(&self) -> Option<LrSuggestion> {
        let (lrs, losses) = self.shown();
        let n = lrs.len().min(losses.len());
        if n < 2 {
            return None;
        }
        // steep: argmin of d loss / d log(lr)
        let grads: Vec<f64> =
            (0..n - 1).map(|i| (losses[i + 1] - losses[i]) / (lrs[i + 1].ln() - lrs[i].ln())).collect();
        let i_steep = argmin(&grads);
        // valley: the longest decreasing subsequence, then 1/3 + 1/6 of the way into it.
        // (fastai's `max_start` can be -1, when the run starts at the first point.)
        let mut lds = vec![1isize; n];
        let (mut max_start, mut max_end) = (0isize, 0usize);
        for i in 1..n {
            for j in 0..i {
                if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                    lds[i] = lds[j] + 1;
                }
                if lds[max_end] < lds[i] {
                    max_end = i;
                    max_start = max_end as isize - lds[max_end];
                }
            }
        }
        let sections = (max_end as isize - max_start) as f64 / 3.0;
        let idx = (max_start + sections as isize + (sections / 2.0) as isize).clamp(0, n as isize - 1) as usize;
        Some(LrSuggestion { steep: lrs[i_steep], valley: lrs[idx] })
    }
}

fn argmin(v: &[f64]) -> usize {
    v.iter().enumerate().filter(|(_, x)| !x.is_nan()).min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_on_a_known_curve() {
        // Loss flat, then falling fastest between lrs[4] and lrs[5], then exploding.
        let lrs: Vec<f64> = (0..10).map(|i| 10f64.powi(i - 6)).collect();
        let losses = vec![3.0, 3.0, 2.9, 2.8, 2.6, 1.5, 1.2, 1.1, 4.0, 9.0];
        // n_skip_end 0 still drops the last point (fastai's `[n_skip:-(n_skip_end+1)]`).
        let f = LrFind { lrs: lrs.clone(), losses, n_skip: 0, n_skip_end: 0, ..Default::default() };
        assert_eq!(f.shown().0.len(), 9);
        let s = f.suggestion().unwrap();
        assert_eq!(s.steep, lrs[4]);
        // Longest decreasing run: indices 1..=7 (lds 7 at index 7, start = 7 - 7 = 0):
        // sections = 7/3 = 2.33 -> idx = 0 + 2 + 1 = 3.
        assert_eq!(s.valley, lrs[3]);
        assert!(LrFind { lrs: vec![1.0], losses: vec![1.0], n_skip: 0, n_skip_end: 0, ..Default::default() }
            .suggestion()
            .is_none());
        // Falling from the first point: fastai's max_start is -1 there.
        let f = LrFind {
            lrs: lrs.clone(),
            losses: (0..10).map(|i| 10.0 - i as f64).collect(),
            n_skip: 0,
            n_skip_end: 0,
            ..Default::default()
        };
        // 9 points shown: lds[8] = 9, max_start = 8 - 9 = -1, sections = 9/3 = 3 -> idx = -1 + 3 + 1 = 3.
        assert_eq!(f.suggestion().unwrap().valley, lrs[3]);
    }

    #[test]
    fn times_print_like_fastai() {
        assert_eq!(fmt_secs(5.4), "0:05");
        assert_eq!(fmt_secs(125.0), "2:05");
        assert_eq!(fmt_secs(3725.0), "1:02:05");
    }
}
