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
//!                                    stage (weights-<n>.safetensors, optim-<n>.safetensors,
//!                                    state.json), as every fit writes it to its models_dir;
//!                                    --resume continues a stage cut short from it
//! <run dir>/best/                    with a stage's `keep_best`: its best epoch's weights and
//!                                    best.json
//! ```
//!
//! Every file is written atomically (`util::write_atomic`: a temporary file, synced, then
//! renamed), checkpoint before progress, so an interrupted run leaves at worst a stage to redo.
//! [`run`](fn@run) with `resume` checks that the config is the run's (every field but
//! `comment`, `device` and `amp`, which take the new config's values), loads the last completed
//! stage's checkpoint, restores the freezing and class loss of the completed stages and the
//! epoch count, and trains the remaining stages. A stage cut short continues from its last
//! completed epoch when `last/` holds that stage's unfinished fit (the same model, rates and
//! options, begun after the completed stages): its weights, optimiser state, schedule position,
//! epoch count and recorded rows ([`crate::learner::Learner::take_unfinished_fit`]); else it
//! starts again from its beginning.
//!
//! What a resumed run reproduces: everything an epoch depends on is in `last/` or seeded by the
//! epoch count (the loader's shuffle and augmentations, and libtorch's generator for dropout at
//! each epoch's start), so a resumed run ends with the uninterrupted run's weights, bit for bit
//! on the same machine (tests/it/resume.rs). Only the smoothed training loss restarts, which
//! shows in the `trn_loss` of the resumed epochs.

pub mod config;
pub mod folder;
pub mod run;

pub use config::{lesson_stages, task_stages, DataFormat, DeviceChoice, FreezeTo, Stage, StageLoss, TrainConfig};
pub use folder::{
    checkpoint_name, default_run_dir, prepare, EpochRecord, Prepared, RunProgress, StageRecord, CONFIG_FILE,
    PROGRESS_FILE,
};
pub use run::{run, run_stages, RunReport, Trainer};
