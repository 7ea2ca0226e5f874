//! Nothing lost: the learner's state in memory ([`Checkpoint`]: try a learning rate, then go
//! back) and on disk (`models_dir/last`, written after every epoch, which
//! [`Learner::restore_last`] rebuilds after a kernel restart or a killed process).
//!
//! `models_dir/last/` holds `weights-<epochs>.safetensors` and `state.json` (what the model
//! is, the epoch count, the freezing, the recorder, and the fit in progress with its schedule
//! position), and `optim-<epochs>.safetensors`, the state of the fit's optimiser
//! ([`super::adam`]). Each file is written atomically and `state.json` last, naming the others,
//! so a kill at any moment leaves the previous epoch's state readable. A resumed fit continues
//! with the saved weights, schedule position, epoch count and optimiser state, so it trains as
//! the uninterrupted fit would have.

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
    /// The optimiser's state file (`optim-<epochs>.safetensors`), when a fit's optimiser was
    /// saved ([`super::adam`]); older states have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optimizer: Option<String>,
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
        let optimizer = match &self.adam {
            Some(adam) => {
                let name = format!("optim-{}.safetensors", self.epochs_done);
                crate::util::write_atomic_with(&dir.join(&name), |tmp| adam.write(tmp))?;
                Some(name)
            }
            None => None,
        };
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
            optimizer: optimizer.clone(),
        };
        let path = dir.join(STATE_FILE);
        let mut text = serde_json::to_string_pretty(&state).map_err(|e| Error::json(&path, e))?;
        text.push('\n');
        crate::util::write_atomic(&path, text.as_bytes())?;
        // Older weights and optimiser states are no longer named by state.json.
        for old in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            let stale = (name.starts_with("weights-") && name != weights)
                || (name.starts_with("optim-") && Some(&name) != optimizer.as_ref());
            if stale {
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
        let (path, state) = read_state(models_dir)?;
        let bad = |problem: String| Error::checkpoint(&path, problem);
        if data.classes != state.classes {
            return Err(bad(format!("saved for classes {:?}, the data has {:?}", state.classes, data.classes)));
        }
        let sz = data.trn_dl.dataset.tfms.sz;
        if sz != state.sz {
            return Err(bad(format!("saved for size {}, the data is at {sz}", state.sz)));
        }
        let parts = TaskParts {
            target: state.target,
            head: state.head.clone(),
            loss: state.loss.clone(),
            metrics: state.metrics.clone(),
        };
        let opts = LearnerOpts { arch: state.arch, weights: None, models_dir: models_dir.to_path_buf() };
        let mut learn = Learner::build(data, parts, opts, false)?;
        learn.take_state(state)?;
        let dir = models_dir.join(LAST_DIR);
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

    /// Put the state of `last/` on this learner: weights, freezing, epoch count, recorder, the
    /// unfinished fit and its optimiser.
    fn take_state(&mut self, state: LastState) -> Result<()> {
        let dir = self.models_dir.join(LAST_DIR);
        self.load(&dir.join(&state.weights).to_string_lossy())?;
        self.freeze_to(state.frozen_to as isize);
        self.epochs_done = state.epochs_done;
        self.recorder = state.recorder;
        self.pending = state.fit.filter(FitInProgress::unfinished);
        self.adam = match &state.optimizer {
            Some(name) => Some(super::adam::Adam::read(&dir.join(name), &self.model.vs)?),
            None => None,
        };
        if self.pending.is_some() && self.adam.is_none() {
            println!("{}: no optimiser state was saved; a resumed fit starts Adam afresh", dir.display());
        }
        Ok(())
    }

    /// The unfinished fit that `models_dir/last` holds, if it is one this learner can continue:
    /// the same model (architecture, classes, size, and the head and loss of `expected`: those the
    /// fit trains with), with `epochs_before` epochs
    /// trained before the fit began, and a fit that `accept`s (the same rates and options). Then the learner takes that state ([`Learner::restore_last`]
    /// on this learner) and the fit is returned, for [`Learner::resume_fit`]; else nothing
    /// changes. `fastdet train --resume` continues an interrupted stage with it.
    pub fn take_unfinished_fit(
        &mut self,
        epochs_before: usize,
        expected: &TaskParts,
        accept: impl Fn(&FitInProgress) -> bool,
    ) -> Result<Option<FitInProgress>> {
        let (path, state) = match read_state(&self.models_dir) {
            Ok(found) => found,
            Err(Error::Io { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(fit) = state.fit.clone().filter(FitInProgress::unfinished) else { return Ok(None) };
        let same = state.arch == self.model.spec.arch
            && state.head == expected.head
            && state.loss == expected.loss
            && state.classes == self.data.classes
            && state.sz == self.data.trn_dl.dataset.tfms.sz;
        if !same || state.epochs_done != epochs_before + fit.epochs_done || !accept(&fit) {
            println!("{}: the state there is not of this fit; it starts from its beginning", path.display());
            return Ok(None);
        }
        self.take_state(state)?;
        Ok(self.pending.clone())
    }

    /// Continue the fit that [`Learner::restore_last`] found unfinished, from its next epoch,
    /// with its learning rates, schedule and optimiser where they were.
    pub fn resume_fit(&mut self) -> Result<FitReport> {
        let plan = self
            .pending
            .take()
            .ok_or_else(|| Error::Invalid("resume_fit: no unfinished fit (restore_last finds one)".into()))?;
        self.fit_from(plan)
    }
}

/// `models_dir/last/state.json` and what it holds, checked for its version.
fn read_state(models_dir: &Path) -> Result<(PathBuf, LastState)> {
    let path = models_dir.join(LAST_DIR).join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let state: LastState = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
    if state.version != STATE_VERSION {
        return Err(Error::checkpoint(
            &path,
            format!("state version {} (this fastdet reads {STATE_VERSION})", state.version),
        ));
    }
    Ok((path, state))
}
