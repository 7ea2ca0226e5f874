//! The orchestrator of `fastdet train`: a [`Trainer`] builds the learner of a prepared run
//! folder, trains the remaining stages one by one and records each ([`run`]).

use super::config::{FreezeTo, StageLoss, TrainConfig};
use super::folder::{
    checkpoint_name, prepare, write_json, EpochRecord, Prepared, RunProgress, StageRecord, PROGRESS_FILE,
};
use crate::error::{Error, Result};
use crate::learner::state::FitInProgress;
use crate::learner::{BestEpoch, Learner, Lrs};
use crate::model::HeadKind;
use std::path::{Path, PathBuf};

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub run_dir: PathBuf,
    pub stages_total: usize,
    /// 1-based stages trained by this call (empty when the run was already complete).
    pub stages_run: Vec<usize>,
    /// The stage whose checkpoint the run continued from, if it resumed.
    pub resumed_after: Option<usize>,
    pub metric_names: Vec<String>,
    /// `[val_loss, metrics...]` after the last stage.
    pub result: Vec<f64>,
    /// The best epoch of each stage that kept one or stopped early (1-based stage).
    pub best: Vec<(usize, BestEpoch)>,
    /// Epochs this call trained (a stage resumed mid-way counts only its missing epochs).
    pub epochs_trained: usize,
}

impl RunReport {
    pub fn already_complete(&self) -> bool {
        self.stages_run.is_empty()
    }
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_complete() {
            write!(
                f,
                "{}: all {} stages were already done; nothing trained. ",
                self.run_dir.display(),
                self.stages_total
            )?;
        }
        write!(f, "final (stage {}/{}):", self.stages_total, self.stages_total)?;
        let names = std::iter::once("val_loss".to_string()).chain(self.metric_names.iter().cloned());
        for (n, v) in names.zip(&self.result) {
            write!(f, " {n} {v:.6}")?;
        }
        write!(f, "  {:?}", self.result)?;
        for (k, b) in &self.best {
            write!(f, "\nstage {k}: {b}")?;
        }
        write!(f, "\nepochs trained by this call: {}", self.epochs_trained)
    }
}

/// A run in progress: the learner, the run directory and the progress so far.
pub struct Trainer {
    pub learner: Learner,
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub progress: RunProgress,
    resumed_after: Option<usize>,
    stages_run: Vec<usize>,
    /// Epochs trained by this call.
    epochs_trained: usize,
    /// The next stage's fit, cut short and found in `last/`, to continue.
    unfinished: Option<FitInProgress>,
}

impl Trainer {
    /// [`prepare`], then build the learner and, when resuming, load the last checkpoint.
    pub fn open(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<Self> {
        Self::from_prepared(prepare(config, run_dir, resume)?)
    }

    pub fn from_prepared(p: Prepared) -> Result<Self> {
        let Prepared { config, run_dir, progress, .. } = p;
        let mut learner = config.learner(&run_dir)?;
        learner.set_amp(config.amp);
        let names = learner.recorder.metric_names.clone();
        // A run of an older fastdet may lack metrics added since (the SSD's map): its rows keep
        // the columns they had.
        let older = names.starts_with(&progress.metric_names) && names.len() > progress.metric_names.len();
        if older && !progress.completed.is_empty() {
            println!(
                "{}: the epochs recorded so far have metrics {:?}; the next ones add {:?}",
                run_dir.join(PROGRESS_FILE).display(),
                progress.metric_names,
                &names[progress.metric_names.len()..]
            );
        }
        if !progress.completed.is_empty() && progress.metric_names != names && !older {
            return Err(Error::run(
                run_dir.join(PROGRESS_FILE),
                format!("metrics {:?} are not this task's {:?}", progress.metric_names, names),
            ));
        }
        let progress = RunProgress { metric_names: names, ..progress };
        let nb = learner.data.trn_dl.len();
        for (i, s) in config.stages.iter().enumerate().skip(progress.completed.len()) {
            s.opts()
                .validate(s.n_cycle, Some(nb))
                .map_err(|(name, problem)| config.invalid(&format!("stages[{i}].{name}"), problem))?;
        }
        let mut resumed_after = None;
        let epochs_before = progress.completed.last().map_or(0, |r| r.epochs_done);
        if let Some(last) = progress.completed.last() {
            // The freezing the completed stages left, then their last weights.
            for s in &config.stages[..progress.completed.len()] {
                apply_freeze(&mut learner, s.freeze_to);
                apply_class_loss(&mut learner, s.class_loss)?;
            }
            learner.load(&run_dir.join(&last.checkpoint).to_string_lossy())?;
            learner.set_epochs_done(last.epochs_done);
            println!(
                "resuming {} after stage {}/{} from {}",
                run_dir.display(),
                last.stage,
                config.stages.len(),
                last.checkpoint
            );
            resumed_after = Some(last.stage);
        }
        // A stage cut short: `last/` holds its state after its last completed epoch.
        let mut unfinished = None;
        if let Some(stage) = config.stages.get(progress.completed.len()) {
            // The head and loss the stage trains with (its class loss).
            let mut expected = learner.parts();
            if let Some(l) = stage.class_loss {
                if let HeadKind::Ssd(cfg) = &mut expected.head {
                    cfg.class_loss = l.into();
                }
            }
            let (lrs, opts) = (Lrs(stage.lrs.clone()), stage.opts());
            let same_fit = |f: &FitInProgress| f.lrs == lrs && f.n_cycle == stage.n_cycle && f.opts == opts;
            if let Some(fit) = learner.take_unfinished_fit(epochs_before, &expected, same_fit)? {
                println!(
                    "resuming stage {}/{} after its epoch {} of {} from {}",
                    progress.completed.len() + 1,
                    config.stages.len(),
                    fit.epochs_done,
                    stage.epochs(),
                    run_dir.join(crate::learner::state::LAST_DIR).display()
                );
                unfinished = Some(fit);
            }
        }
        Ok(Self {
            learner,
            config,
            run_dir,
            progress,
            resumed_after,
            stages_run: vec![],
            epochs_trained: 0,
            unfinished,
        })
    }

    /// The next stage to train (1-based), if any.
    pub fn next_stage(&self) -> Option<usize> {
        let done = self.progress.completed.len();
        (done < self.config.stages.len()).then_some(done + 1)
    }

    /// Train the next stage, save its checkpoint, then record it in `progress.json`.
    pub fn run_stage(&mut self) -> Result<Option<StageRecord>> {
        let Some(k) = self.next_stage() else { return Ok(None) };
        let stage = self.config.stages[k - 1].clone();
        println!("stage {k}/{}: {stage}", self.config.stages.len());
        apply_freeze(&mut self.learner, stage.freeze_to);
        apply_class_loss(&mut self.learner, stage.class_loss)?;
        // A stage resumed mid-way: its first epochs' rows are in the recorder `last/` restored.
        let earlier = self.unfinished.as_ref().map_or(0, |f| f.epochs_done);
        let report = match self.unfinished.take() {
            Some(_) => self.learner.resume_fit()?,
            None => self.learner.fit(stage.lrs.clone(), stage.n_cycle, stage.opts())?,
        };
        let before = self.learner.recorder.epochs.len().saturating_sub(report.epochs.len() + earlier);
        if let Some(st) = report.stopped {
            return Err(Error::run(
                &self.run_dir,
                format!(
                    "stopped during stage {k}, epoch {} (interrupt): the {} stages before it are saved, and its last completed epoch in last/; --resume continues from there",
                    st.epoch,
                    k - 1
                ),
            ));
        }
        let result = report.last();
        let path = self.learner.save(&checkpoint_name(k))?;
        let rows = self.learner.recorder.epochs[before..].iter().map(|r| EpochRecord {
            stage: k,
            epoch: r.epoch,
            trn_loss: r.trn_loss,
            val_loss: r.val_loss,
            metrics: r.metrics.clone(),
            secs: r.secs,
        });
        self.progress.epochs.extend(rows);
        let checkpoint = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(e) = &report.early_stop {
            println!("stage {k}: {e}");
        }
        if let Some(b) = &report.best {
            println!("stage {k}: {b}");
        }
        self.epochs_trained += report.epochs.len();
        let record = StageRecord {
            stage: k,
            checkpoint,
            result,
            epochs_done: self.learner.epochs_done(),
            best: report.best.map(|b| *b),
        };
        self.progress.completed.push(record.clone());
        write_json(&self.run_dir.join(PROGRESS_FILE), &self.progress)?;
        println!("saved {}", path.display());
        self.stages_run.push(k);
        Ok(Some(record))
    }

    /// Train every remaining stage.
    pub fn run_all(mut self) -> Result<RunReport> {
        while self.run_stage()?.is_some() {}
        Ok(self.report())
    }

    pub fn report(&self) -> RunReport {
        report(
            &self.run_dir,
            &self.config,
            &self.progress,
            self.stages_run.clone(),
            self.resumed_after,
            self.epochs_trained,
        )
    }
}

/// An SSD stage's class loss: the learner keeps its model and continues with this loss.
fn apply_class_loss(learner: &mut Learner, l: Option<StageLoss>) -> Result<()> {
    match l {
        Some(l) => learner.configure_ssd(|cfg| cfg.class_loss = l.into()),
        None => Ok(()),
    }
}

fn apply_freeze(learner: &mut Learner, f: Option<FreezeTo>) {
    match f {
        Some(FreezeTo::Group(n)) => learner.freeze_to(n),
        Some(FreezeTo::Unfreeze) => learner.unfreeze(),
        None => {}
    }
}

fn report(
    run_dir: &Path,
    config: &TrainConfig,
    progress: &RunProgress,
    stages_run: Vec<usize>,
    resumed_after: Option<usize>,
    epochs_trained: usize,
) -> RunReport {
    RunReport {
        run_dir: run_dir.into(),
        stages_total: config.stages.len(),
        stages_run,
        resumed_after,
        metric_names: progress.metric_names.clone(),
        result: progress.completed.last().map(|r| r.result.clone()).unwrap_or_default(),
        best: progress.completed.iter().filter_map(|r| r.best.clone().map(|b| (r.stage, b))).collect(),
        epochs_trained,
    }
}

/// Train `config` in `run_dir`: every stage, or with `resume` the stages `progress.json` does
/// not list yet (nothing when the run is complete). See the module docs.
pub fn run(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<RunReport> {
    run_stages(config, run_dir, resume, usize::MAX)
}

/// [`run`], training at most `max_stages` stages this time (`fastdet train --max-stages`): the
/// run stops after them with its checkpoints, and `--resume` continues.
pub fn run_stages(config: &TrainConfig, run_dir: &Path, resume: bool, max_stages: usize) -> Result<RunReport> {
    let prepared = prepare(config, run_dir, resume)?;
    if prepared.is_complete() {
        let r = report(
            run_dir,
            &prepared.config,
            &prepared.progress,
            vec![],
            prepared.progress.completed.last().map(|c| c.stage),
            0,
        );
        println!(
            "{}: all {} stages are done already (see {PROGRESS_FILE}); nothing to train",
            run_dir.display(),
            r.stages_total
        );
        println!("{}", prepared.progress.table());
        return Ok(r);
    }
    let mut t = Trainer::from_prepared(prepared)?;
    for _ in 0..max_stages {
        if t.run_stage()?.is_none() {
            break;
        }
    }
    if let Some(k) = t.next_stage() {
        println!(
            "stopping before stage {k} (--max-stages {max_stages}); --resume continues from {}",
            run_dir.display()
        );
    }
    Ok(t.report())
}
