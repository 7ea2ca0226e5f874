//! Nothing lost: the learner's state in memory ([`Checkpoint`]: try a learning rate, then go
//! back) and on disk (`models_dir/last`, written after every epoch, which
//! [`Learner::restore_last`] rebuilds after a kernel restart or a killed process).
//!
//! `models_dir/last/` holds `weights-<epochs>.safetensors` and `state.json` (what the model
//! is, the epoch count, the freezing, the recorder, and the fit in progress with its schedule
//! position). Each file is written atomically and `state.json` last, naming its weights file,
//! so a kill at any moment leaves the previous epoch's state readable. The optimiser is not
//! saved: a resumed fit starts Adam afresh (as fastai does at every `fit`).

use super::record::{FitReport, Recorder};
use super::schedule::{FitOpts, Lrs};
use super::{Learner, LearnerOpts};
use crate::data::{ImageData, TargetKind};
use crate::error::{Error, Result};
use crate::metrics::Metric;
use crate::model::loss::Loss;
use crate::model::{Arch, HeadKind};
use crate::task::TaskParts;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The folder under `models_dir` with the state after the last epoch.
pub const LAST_DIR: &str = "last";
const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;

/// A fit and how far it got: enough to continue it ([`Learner::resume_fit`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitInProgress {
    pub lrs: Lrs,
    pub n_cycle: usize,
    pub opts: FitOpts,
    /// Epochs of this fit completed.
    pub epochs_done: usize,
}

impl FitInProgress {
    /// Whether epochs are left to train.
    pub fn unfinished(&self) -> bool {
        self.epochs_done < self.opts.epochs(self.n_cycle)
    }
}

/// `state.json` of `models_dir/last`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastState {
    version: u32,
    weights: String,
    arch: Arch,
    head: HeadKind,
    loss: Loss,
    metrics: Vec<Metric>,
    target: TargetKind,
    sz: u32,
    classes: Vec<String>,
    epochs_done: usize,
    frozen_to: usize,
    recorder: Recorder,
    fit: Option<FitInProgress>,
}

/// The learner's variables and training state, in memory ([`Learner::checkpoint`]).
#[derive(Debug)]
pub struct Checkpoint {
    vars: Vec<(String, Tensor)>,
    epochs_done: usize,
    frozen_to: usize,
    recorder: Recorder,
}

impl Learner {
    /// A copy of the weights, BatchNorm statistics, epoch count, freezing and recorder, to go
    /// back to with [`Learner::restore`] (try a learning rate, then return).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            vars: self.snapshot(),
            epochs_done: self.epochs_done,
            frozen_to: self.frozen_to,
            recorder: self.recorder.clone(),
        }
    }

    /// Back to a [`Checkpoint`] of this learner.
    pub fn restore(&mut self, ck: &Checkpoint) -> Result<()> {
        let vars = self.model.vs.variables();
        if let Some((name, _)) = ck.vars.iter().find(|(n, t)| vars.get(n).is_none_or(|v| v.size() != t.size())) {
            return Err(Error::Invalid(format!(
                "restore: the checkpoint's {name} does not fit this learner (a checkpoint of another model?)"
            )));
        }
        self.restore_vars(&ck.vars);
        self.freeze_to(ck.frozen_to as isize);
        self.epochs_done = ck.epochs_done;
        self.recorder = ck.recorder.clone();
        Ok(())
    }

    /// Write the state after an epoch to `models_dir/last` (see the module docs).
    pub(crate) fn write_last(&self, fit: Option<&FitInProgress>) -> Result<PathBuf> {
        let dir = self.models_dir.join(LAST_DIR);
        let weights = format!("weights-{}.safetensors", self.epochs_done);
        self.model.save(dir.join(&weights))?;
        let parts = self.parts();
        let state = LastState {
            version: STATE_VERSION,
            weights: weights.clone(),
            arch: self.model.spec.arch,
            head: parts.head,
            loss: parts.loss,
            metrics: parts.metrics,
            target: parts.target,
            sz: self.data.trn_dl.dataset.tfms.sz,
            classes: self.data.classes.clone(),
            epochs_done: self.epochs_done,
            frozen_to: self.frozen_to,
            recorder: self.recorder.clone(),
            fit: fit.cloned(),
        };
        let path = dir.join(STATE_FILE);
        let mut text = serde_json::to_string_pretty(&state).map_err(|e| Error::json(&path, e))?;
        text.push('\n');
        crate::util::write_atomic(&path, text.as_bytes())?;
        // Older weights are no longer named by state.json.
        for old in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if name.starts_with("weights-") && name != weights {
                let _ = std::fs::remove_file(old.path());
            }
        }
        Ok(dir.join(weights))
    }

    /// The learner whose state `models_dir/last` holds (written after every epoch of every
    /// fit), on `data` (built as before the restart: same images, classes and size). The
    /// weights, epoch count, freezing and recorder are those after the last completed epoch;
    /// [`Learner::resume_fit`] then continues an interrupted fit.
    pub fn restore_last(data: ImageData, models_dir: impl AsRef<Path>) -> Result<Learner> {
        let models_dir = models_dir.as_ref();
        let dir = models_dir.join(LAST_DIR);
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: LastState = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
        let bad = |problem: String| Error::checkpoint(&path, problem);
        if state.version != STATE_VERSION {
            return Err(bad(format!("state version {} (this fastdet reads {STATE_VERSION})", state.version)));
        }
        if data.classes != state.classes {
            return Err(bad(format!("saved for classes {:?}, the data has {:?}", state.classes, data.classes)));
        }
        let sz = data.trn_dl.dataset.tfms.sz;
        if sz != state.sz {
            return Err(bad(format!("saved for size {}, the data is at {sz}", state.sz)));
        }
        let parts = TaskParts { target: state.target, head: state.head, loss: state.loss, metrics: state.metrics };
        let opts = LearnerOpts { arch: state.arch, weights: None, models_dir: models_dir.to_path_buf() };
        let mut learn = Learner::build(data, parts, opts, false)?;
        learn.load(&dir.join(&state.weights).to_string_lossy())?;
        learn.freeze_to(state.frozen_to as isize);
        learn.epochs_done = state.epochs_done;
        learn.recorder = state.recorder;
        learn.pending = state.fit.filter(FitInProgress::unfinished);
        println!(
            "restored {} after {} epochs{}",
            dir.display(),
            learn.epochs_done,
            match &learn.pending {
                Some(f) => format!(
                    "; the fit in progress has {} of {} epochs done: resume_fit() continues it",
                    f.epochs_done,
                    f.opts.epochs(f.n_cycle)
                ),
                None => String::new(),
            }
        );
        Ok(learn)
    }

    /// Continue the fit that [`Learner::restore_last`] found unfinished, from its next epoch,
    /// with its learning rates and schedule where they were.
    pub fn resume_fit(&mut self) -> Result<FitReport> {
        let plan = self
            .pending
            .take()
            .ok_or_else(|| Error::Invalid("resume_fit: no unfinished fit (restore_last finds one)".into()))?;
        self.fit_from(plan)
    }
}
