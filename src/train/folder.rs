//! A run folder of `fastdet train`: the resolved `config.json`, `progress.json` (the completed
//! stages and the epoch table) and a checkpoint per stage, every file written atomically; and
//! [`prepare`], which checks a folder against a config before anything is trained.

use super::config::TrainConfig;
use crate::data::Pascal;
use crate::error::{Error, Result};
use crate::learner::{epoch_table, EpochRow};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};

/// Deserialise a float written as `null` (serde_json writes NaN and infinities so) as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn vec_f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// One row of the epoch table, with the stage it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRecord {
    /// 1-based stage.
    pub stage: usize,
    /// Epoch within the stage (as the learner's table numbers it).
    pub epoch: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub trn_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "vec_f64_or_nan")]
    pub metrics: Vec<f64>,
    /// Seconds the epoch took.
    #[serde(default)]
    pub secs: f64,
}

impl EpochRecord {
    /// The stage's row as the learner's epoch table shows it.
    pub fn row(&self) -> EpochRow {
        EpochRow {
            epoch: self.epoch,
            trn_loss: self.trn_loss,
            val_loss: self.val_loss,
            metrics: self.metrics.clone(),
            secs: self.secs,
        }
    }
}

/// A completed stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageRecord {
    /// 1-based stage.
    pub stage: usize,
    /// The checkpoint's file name in the run directory.
    pub checkpoint: String,
    /// `[val_loss, metrics...]` after the stage.
    #[serde(deserialize_with = "vec_f64_or_nan")]
    pub result: Vec<f64>,
    /// Epochs trained when the stage ended: a resumed run continues the count, so its later
    /// epochs see the shuffles and augmentations an uninterrupted run would have.
    #[serde(default)]
    pub epochs_done: usize,
    /// The stage's best epoch, when it kept one (`keep_best`, `early_stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<crate::learner::BestEpoch>,
}

/// `progress.json`: what a run has done so far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunProgress {
    pub metric_names: Vec<String>,
    pub completed: Vec<StageRecord>,
    pub epochs: Vec<EpochRecord>,
}

impl RunProgress {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::json(path, e))
    }

    /// The epoch table, as the learner prints it, with a stage column.
    pub fn table(&self) -> String {
        let rows: Vec<(usize, EpochRow)> = self.epochs.iter().map(|r| (r.stage, r.row())).collect();
        epoch_table(&self.metric_names, rows.iter().map(|(k, r)| (Some(*k), r)))
    }
}

/// The default run directory of a config file: `runs/<file stem>`.
pub fn default_run_dir(config_path: &Path) -> PathBuf {
    let stem = config_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    Path::new("runs").join(stem)
}

pub const CONFIG_FILE: &str = "config.json";
pub const PROGRESS_FILE: &str = "progress.json";

/// The checkpoint name of stage `k` (1-based), for [`crate::learner::Learner::save`] and
/// [`load`](crate::learner::Learner::load).
pub fn checkpoint_name(stage: usize) -> String {
    format!("stage-{stage}")
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::json(path, e))?;
    text.push('\n');
    crate::util::write_atomic(path, text.as_bytes())
}

/// A checked run directory: the resolved config and what was done so far.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub progress: RunProgress,
    pub resumed: bool,
}

impl Prepared {
    pub fn is_complete(&self) -> bool {
        self.progress.completed.len() >= self.config.stages.len()
    }
}

/// Check `run_dir` against `config` and `resume`; write `config.json` for a new run.
pub fn prepare(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<Prepared> {
    config.validate()?;
    let resolved = config.resolved();
    // The data folder first, so a wrong path leaves nothing behind.
    Pascal::open(resolved.data_root()).map_err(|e| config.invalid("data", e))?;
    let config_path = run_dir.join(CONFIG_FILE);
    let progress_path = run_dir.join(PROGRESS_FILE);
    let has_progress = progress_path.exists();
    if !resume {
        if has_progress {
            return Err(Error::run(
                run_dir,
                format!(
                    "already holds a run ({} exists): pass --resume to continue it, or choose another --run-dir",
                    progress_path.display()
                ),
            ));
        }
        write_json(&config_path, &resolved)?;
        return Ok(Prepared {
            config: resolved,
            run_dir: run_dir.into(),
            progress: RunProgress::default(),
            resumed: false,
        });
    }
    if config_path.exists() {
        let saved = TrainConfig::from_file(&config_path)?;
        let diff = resolved.differences(&saved);
        if !diff.is_empty() {
            return Err(Error::run(
                run_dir,
                format!(
                    "cannot resume: {} differs from the run's {} in {}; resume with the run's config or choose another --run-dir",
                    config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the config".into()),
                    config_path.display(),
                    diff.join(", ")
                ),
            ));
        }
    } else if has_progress {
        return Err(Error::run(run_dir, format!("cannot resume: it has {PROGRESS_FILE} but no {CONFIG_FILE}")));
    }
    if !has_progress {
        println!("{}: no {PROGRESS_FILE} yet, starting from the first stage", run_dir.display());
        write_json(&config_path, &resolved)?;
        return Ok(Prepared {
            config: resolved,
            run_dir: run_dir.into(),
            progress: RunProgress::default(),
            resumed: false,
        });
    }
    let progress = RunProgress::read(&progress_path)?;
    let bad = |problem: String| Error::run(&progress_path, problem);
    if progress.completed.len() > resolved.stages.len() {
        return Err(bad(format!(
            "{} stages completed but the config has {}",
            progress.completed.len(),
            resolved.stages.len()
        )));
    }
    for (i, rec) in progress.completed.iter().enumerate() {
        if rec.stage != i + 1 {
            return Err(bad(format!("completed stage {} listed in position {}", rec.stage, i + 1)));
        }
    }
    if let Some(last) = progress.completed.last() {
        let ckpt = run_dir.join(&last.checkpoint);
        if !ckpt.is_file() {
            return Err(bad(format!(
                "stage {} is completed but its checkpoint {} is missing",
                last.stage,
                ckpt.display()
            )));
        }
    }
    Ok(Prepared { config: resolved, run_dir: run_dir.into(), progress, resumed: true })
}
