//! `fastdet train`: a training run described by a JSON config, with a checkpoint after every
//! stage and `--resume` after an interruption.
//!
//! - [`config`]: the schema ([`TrainConfig`], [`Stage`]) and its checks;
//! - [`folder`]: the run folder (`config.json`, `progress.json`, checkpoints), checked and
//!   written atomically;
//! - [`run`](mod@run): the orchestrator ([`Trainer`]) that trains the stages one by one.
//!
//! A config ([`TrainConfig`]) names the data, the task (the lesson's single-object detector,
//! largest-object classifier or box regressor), the model, the transforms and a list of fit
//! [`Stage`]s; every field has the lesson's default, so `{}` is lesson 8's detector. A run
//! directory holds:
//!
//! ```text
//! <run dir>/config.json              the resolved config (every default filled in)
//! <run dir>/stage-<k>.safetensors    the weights after stage k (1-based)
//! <run dir>/progress.json            the completed stages and the epoch table so far
//! ```
//!
//! Every file is written atomically (a temporary file, then a rename), checkpoint before
//! progress, so an interrupted run leaves at worst a stage to redo. [`run`] with `resume`
//! checks that the config is the run's (apart from `comment` and `device`), loads the last
//! stage's checkpoint, restores the freezing of the completed stages and trains the rest.
//!
//! What a resumed run does not reproduce exactly: the optimiser is fresh at every stage anyway
//! (fastai builds one per `fit`), but the loader's epoch counter (which seeds the shuffle and
//! the augmentations), the smoothed-loss state and the dropout RNG start again, so the
//! remaining stages see other (equally random) batches than an uninterrupted run.

pub mod config;
pub mod folder;
pub mod run;

pub use config::{lesson_stages, task_stages, DataFormat, DeviceChoice, FreezeTo, Stage, StageLoss, TrainConfig};
pub use folder::{
    checkpoint_name, default_run_dir, prepare, EpochRecord, Prepared, RunProgress, StageRecord, CONFIG_FILE,
    PROGRESS_FILE,
};
pub use run::{run, run_stages, RunReport, Trainer};
