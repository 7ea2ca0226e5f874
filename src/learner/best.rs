//! Keeping the best epoch and stopping early, beyond fastai 0.7 (fastai v2's `SaveModelCallback`
//! and `EarlyStoppingCallback`): one callback watches a column of the epoch table
//! ([`FitOpts::keep_best`], `val_loss` for early stopping alone) after every epoch.
//!
//! - An epoch is better when its value is strictly lower (`val_loss`, `trn_loss`, `detn_l1`)
//!   or strictly higher (accuracies, `map`) than the best so far ([`Metric::higher_is_better`]);
//!   a NaN or infinite value is never the best.
//! - With `keep_best`, the best epoch's weights go to `models_dir/best/` as
//!   `weights-<epochs>.safetensors` (a checkpoint that loads on its own) beside `best.json`
//!   ([`BestEpoch`]: the column, the epoch and its value), each written atomically, the weights
//!   first, so a kill leaves the previous best readable.
//! - With `early_stop`, the fit ends after `patience` epochs in a row without improvement, but
//!   not before `min_epochs` epochs of the fit; the learner keeps the last epoch's weights (the
//!   best are in `best/`) and `models_dir/last` records the fit as finished.
//!
//! A fit resumed from `last/` ([`super::Learner::resume_fit`], `fastdet train --resume`) reads
//! the best so far and the epochs without improvement back from the epoch rows it had recorded,
//! so it keeps and stops exactly as the uninterrupted fit would.

use super::callback::{Callback, Flow};
use super::record::EpochRow;
use super::schedule::{EarlyStop, FitOpts};
use super::Learner;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The folder under `models_dir` with the best epoch's weights.
pub const BEST_DIR: &str = "best";
/// What `best/` holds ([`BestEpoch`]).
pub const BEST_FILE: &str = "best.json";

/// The best epoch of a fit by one column: `best.json`, and in a [`super::FitReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    pub column: String,
    /// Whether higher is better in this column.
    pub higher_is_better: bool,
    /// The epoch as the fit's table numbers it.
    pub epoch: usize,
    /// The learner's epoch count after it ([`Learner::epochs_done`]; across fits and stages).
    pub epochs_done: usize,
    pub value: f64,
    /// Where its weights are (`models_dir/best/weights-<epochs_done>.safetensors`); `None` when
    /// the fit only stops early, or when an interrupted fit had not saved them.
    pub weights: Option<PathBuf>,
}

impl std::fmt::Display for BestEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "best epoch {} by {} ({} is better): {:.6}",
            self.epoch,
            self.column,
            if self.higher_is_better { "higher" } else { "lower" },
            self.value
        )?;
        match &self.weights {
            Some(p) => write!(f, ", weights in {}", p.display()),
            None => Ok(()),
        }
    }
}

/// Where a column of the epoch table is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    TrnLoss,
    ValLoss,
    Metric(usize),
}

/// The callback of [`FitOpts::keep_best`] and [`FitOpts::early_stop`].
pub(crate) struct BestCb {
    column: String,
    at: Column,
    higher: bool,
    save: bool,
    early: Option<EarlyStop>,
    /// Epochs in this fit (the last one is never cut short).
    n_epochs: usize,
    best: Option<BestEpoch>,
    /// Epochs of this fit so far, and of them the last ones without improvement.
    seen: usize,
    since: usize,
    /// Set when this callback ended the fit: why.
    pub stopped_early: Option<String>,
}

impl BestCb {
    /// The callback for `opts` (none when neither option is on), for a fit of `n_epochs` of
    /// which `done` are already trained (a resumed fit: their rows are the last `done` of the
    /// learner's recorder). An error when the column is not in the learner's epoch table.
    pub fn new(learn: &Learner, opts: &FitOpts, n_epochs: usize, done: usize) -> Result<Option<Self>> {
        let Some(column) = opts.monitored() else { return Ok(None) };
        let names = &learn.recorder.metric_names;
        let (at, higher, column) = match column {
            "val_loss" => (Column::ValLoss, false, column.to_string()),
            "trn_loss" => (Column::TrnLoss, false, column.to_string()),
            c => {
                // `accuracy_thresh` names `accuracy_thresh(0.5)`.
                let i = names.iter().position(|n| n == c || n.split('(').next() == Some(c)).ok_or_else(|| {
                    Error::Invalid(format!(
                        "fit: keep_best: no column {c:?} in the epoch table; it has val_loss, trn_loss{}",
                        names.iter().map(|n| format!(", {n}")).collect::<String>()
                    ))
                })?;
                (Column::Metric(i), learn.metrics.get(i).is_none_or(|m| m.higher_is_better()), names[i].clone())
            }
        };
        let mut cb = BestCb {
            column,
            at,
            higher,
            save: opts.keep_best.is_some(),
            early: opts.early_stop,
            n_epochs,
            best: None,
            seen: 0,
            since: 0,
            stopped_early: None,
        };
        let rows = &learn.recorder.epochs;
        let replayed = &rows[rows.len().saturating_sub(done)..];
        let first_count = learn.epochs_done().saturating_sub(replayed.len());
        for (j, row) in replayed.iter().enumerate() {
            cb.note(row, first_count + j + 1);
        }
        if let (true, Some(best)) = (cb.save, &mut cb.best) {
            // The weights of the best epoch before the interruption, if they were saved.
            best.weights = read_best(learn)
                .ok()
                .filter(|b| b.column == best.column && b.epochs_done == best.epochs_done && b.value == best.value)
                .and_then(|b| b.weights);
        }
        Ok(Some(cb))
    }

    /// The best epoch so far.
    pub fn best(&self) -> Option<BestEpoch> {
        self.best.clone()
    }

    fn value(&self, row: &EpochRow) -> f64 {
        match self.at {
            Column::TrnLoss => row.trn_loss,
            Column::ValLoss => row.val_loss,
            Column::Metric(i) => row.metrics.get(i).copied().unwrap_or(f64::NAN),
        }
    }

    /// Count `row` (the learner's epoch count after it: `epochs_done`); whether it is the best.
    fn note(&mut self, row: &EpochRow, epochs_done: usize) -> bool {
        let v = self.value(row);
        self.seen += 1;
        let better =
            v.is_finite() && self.best.as_ref().is_none_or(|b| if self.higher { v > b.value } else { v < b.value });
        if better {
            self.best = Some(BestEpoch {
                column: self.column.clone(),
                higher_is_better: self.higher,
                epoch: row.epoch,
                epochs_done,
                value: v,
                weights: None,
            });
            self.since = 0;
        } else {
            self.since += 1;
        }
        better
    }
}

impl Callback for BestCb {
    /// A new best is saved here, before `last/` records the epoch (in `after_epoch`): a kill in
    /// between leaves `best/` ahead of `last/`, and the resumed fit trains that epoch again to
    /// the same weights, so no best epoch is ever lost. (The NaN guard's `after_validate` comes
    /// first: a non-finite row never gets here.)
    fn after_validate(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<()> {
        if self.note(row, learn.epochs_done() + 1) && self.save {
            if let Some(best) = &mut self.best {
                best.weights = Some(write_best(learn, best)?);
            }
        }
        Ok(())
    }

    fn after_epoch(&mut self, learn: &mut Learner, row: &EpochRow) -> Result<Flow> {
        let Some(es) = self.early else { return Ok(Flow::Continue) };
        if self.since >= es.patience && self.seen >= es.min_epochs && row.epoch + 1 < self.n_epochs {
            self.stopped_early = Some(format!(
                "stopped early after epoch {}: {} did not improve for {} epochs (patience {})",
                row.epoch, self.column, self.since, es.patience
            ));
            // The fit is over: `last/` no longer offers to resume it.
            if let Err(err) = learn.write_last(None) {
                eprintln!("warning: the learner's state after epoch {} was not saved: {err}", row.epoch);
            }
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }
}

/// Write the learner's weights as the best epoch `best` to `models_dir/best/` (see the module
/// docs); the weights' path.
fn write_best(learn: &Learner, best: &BestEpoch) -> Result<PathBuf> {
    let dir = learn.models_dir().join(BEST_DIR);
    let name = format!("weights-{}.safetensors", best.epochs_done);
    let weights = dir.join(&name);
    learn.model.save(&weights)?;
    let path = dir.join(BEST_FILE);
    let record = BestEpoch { weights: Some(weights.clone()), ..best.clone() };
    let mut text = serde_json::to_string_pretty(&record).map_err(|e| Error::json(&path, e))?;
    text.push('\n');
    crate::util::write_atomic(&path, text.as_bytes())?;
    for old in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten() {
        let n = old.file_name().to_string_lossy().into_owned();
        if n.starts_with("weights-") && n != name {
            let _ = std::fs::remove_file(old.path());
        }
    }
    Ok(weights)
}

/// `models_dir/best/best.json` of a learner: which epoch is kept there.
pub fn read_best(learn: &Learner) -> Result<BestEpoch> {
    let path = learn.models_dir().join(BEST_DIR).join(BEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::json(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(higher: bool) -> BestCb {
        BestCb {
            column: "c".into(),
            at: Column::ValLoss,
            higher,
            save: false,
            early: None,
            n_epochs: 10,
            best: None,
            seen: 0,
            since: 0,
            stopped_early: None,
        }
    }

    fn row(epoch: usize, v: f64) -> EpochRow {
        EpochRow { epoch, trn_loss: 0.0, val_loss: v, metrics: vec![], secs: 0.0 }
    }

    #[test]
    fn better_is_strict_nan_is_never_best_and_ties_count_as_no_improvement() {
        let mut w = watch(false);
        // NaN first: no best yet, and it is no improvement.
        assert!(!w.note(&row(0, f64::NAN), 1));
        assert_eq!((w.best.is_none(), w.since), (true, 1));
        assert!(w.note(&row(1, 3.0), 2));
        assert!(!w.note(&row(2, 3.0), 3), "a tie is no improvement");
        assert!(!w.note(&row(3, f64::INFINITY), 4));
        assert!(w.note(&row(4, 2.5), 5));
        let b = w.best.clone().unwrap();
        assert_eq!((b.epoch, b.epochs_done, b.value, w.since, w.seen), (4, 5, 2.5, 0, 5));
        let mut up = watch(true);
        for (e, v) in [0.1, 0.3, 0.2, f64::NAN].into_iter().enumerate() {
            up.note(&row(e, v), e + 1);
        }
        assert_eq!((up.best.unwrap().epoch, up.since), (1, 2));
    }
}
