//! `fastdet train`: a training run described by a JSON config, with a checkpoint after every
//! stage and `--resume` after an interruption.
//!
//! - [`config`]: the schema ([`TrainConfig`], [`Stage`]) and its checks;
//! - [`folder`]: the run folder (`config.json`, `progress.json`, checkpoints), checked and
//!   written atomically;
//! - [`run`](mod@run): the orchestrator ([`Trainer`]) that trains the stages one by one.
//!
//! A config ([`TrainConfig`]) names the data, the task (any [`crate::task::Task`]: lesson 8's
//! `single_object` detector, largest-object `classifier` or box `regression`, lesson 9's
//! `multilabel`, `ssd` or `ssd_focal`), the model, the transforms and a list of fit [`Stage`]s;
//! every field has the lesson's default, so `{}` is lesson 8's single-object detector, and a
//! config without `stages` gets its task's lesson schedule ([`task_stages`]). A run directory
//! holds:
//!
//! ```text
//! <run dir>/config.json              the resolved config (the data folder made explicit)
//! <run dir>/stage-<k>.safetensors    the weights after stage k (1-based)
//! <run dir>/progress.json            the completed stages (with each one's epoch count) and
//!                                    the epoch table so far
//! <run dir>/last/                    the learner's state after its latest epoch, within a
//!                                    stage (weights-<n>.safetensors, state.json), as every
//!                                    fit writes it to its models_dir; --resume does not read it
//! ```
//!
//! Every file is written atomically (`util::write_atomic`: a temporary file, synced, then
//! renamed), checkpoint before progress, so an interrupted run leaves at worst a stage to redo.
//! [`run`](fn@run) with `resume` checks that the config is the run's (every field but
//! `comment`, `device` and `amp`, which take the new config's values), loads the last completed
//! stage's checkpoint, restores the freezing and class loss of the completed stages and the
//! epoch count, and trains the remaining stages; a stage cut short starts again from its
//! beginning.
//!
//! What a resumed run reproduces: the optimiser is fresh at every stage anyway (fastai builds
//! one per `fit`) and so is the smoothed loss; the epoch count (which seeds the loader's shuffle
//! and augmentations) continues from `progress.json`, so the remaining stages see the batches
//! an uninterrupted run would have. What it does not: libtorch's random state (dropout) starts
//! again, so the weights differ from an uninterrupted run's within the randomness of training.

pub mod config;
pub mod folder;
pub mod run;

pub use config::{lesson_stages, task_stages, DataFormat, DeviceChoice, FreezeTo, Stage, StageLoss, TrainConfig};
pub use folder::{
    checkpoint_name, default_run_dir, prepare, EpochRecord, Prepared, RunProgress, StageRecord, CONFIG_FILE,
    PROGRESS_FILE,
};
pub use run::{run, run_stages, RunReport, Trainer};
