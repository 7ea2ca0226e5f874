//! The schema of a `fastdet train` config ([`TrainConfig`]: data, task, model, transforms and
//! the fit [`Stage`]s), its defaults (lesson 8's detector) and its checks.

use crate::data::{DataOpts, DataSource, ImageData};
use crate::error::{Error, Result};
use crate::learner::schedule::check_lr;
use crate::learner::{EarlyStop, FitOpts, Learner, LearnerOpts};
use crate::model::ssd::{ClassLoss, Matching};
use crate::model::{Arch, N_GROUPS};
use crate::task::Task;
use crate::transforms::{lesson_augmentations, tfms_from_model, Aug, CropType, TfmY};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};
use tch::Device;

/// Which annotation format the data is in (`"json"`, `"voc"`, `"coco"`, `"yolo"`); a config
/// without `format` has it detected ([`crate::data::DataSource::detect`]).
pub use crate::data::Format as DataFormat;

/// Where to train: `auto` is CUDA when usable, else the CPU (`FASTDET_DEVICE` still overrides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// The freezing before a stage's fit: a layer group (`freeze_to(n)`, negative from the end) or
/// `"unfreeze"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeTo {
    Group(isize),
    Unfreeze,
}

impl Serialize for FreezeTo {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            FreezeTo::Group(n) => s.serialize_i64(*n as i64),
            FreezeTo::Unfreeze => s.serialize_str("unfreeze"),
        }
    }
}

impl<'de> Deserialize<'de> for FreezeTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FreezeTo;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a layer group number (e.g. -2) or \"unfreeze\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<FreezeTo, E> {
                isize::try_from(v).map(FreezeTo::Group).map_err(|_| E::custom(format!("freeze_to {v} is out of range")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<FreezeTo, E> {
                isize::try_from(v).map(FreezeTo::Group).map_err(|_| E::custom(format!("freeze_to {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<FreezeTo, E> {
                match v {
                    "unfreeze" => Ok(FreezeTo::Unfreeze),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl std::fmt::Display for FreezeTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreezeTo::Group(n) => write!(f, "freeze_to({n})"),
            FreezeTo::Unfreeze => write!(f, "unfreeze()"),
        }
    }
}

fn default_n_cycle() -> usize {
    1
}

/// One `fit` of the schedule, after an optional change of freezing. Without `freeze_to` the
/// freezing stays what it was (a new learner is frozen up to its head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_to: Option<FreezeTo>,
    /// One learning rate for every layer group, or one per group (3).
    pub lrs: Vec<f64>,
    #[serde(default = "default_n_cycle")]
    pub n_cycle: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle_mult: Option<usize>,
    /// `[div, cut]` of the triangular CLR schedule (needs `cycle_len`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_clr: Option<(f64, usize)>,
    /// SSD tasks: the class loss from this stage on, `"bce"` or `"focal"` (the lesson's
    /// `FocalLoss`): lesson 9 continues the BCE model with focal loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_loss: Option<StageLoss>,
    /// Keep this stage's best epoch by a column of the epoch table (`"val_loss"`, `"trn_loss"`
    /// or a metric of the task, such as the SSD's `"map"`) in `<run dir>/best/`
    /// ([`FitOpts::keep_best`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_best: Option<String>,
    /// `{"patience": p, "min_epochs": n}`: end the stage after `p` epochs without improvement of
    /// `keep_best`'s column (`val_loss` without one), not before its epoch `n`
    /// ([`FitOpts::early_stop`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
}

/// The class loss an SSD stage switches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageLoss {
    Bce,
    Focal,
}

impl From<StageLoss> for ClassLoss {
    fn from(l: StageLoss) -> ClassLoss {
        match l {
            StageLoss::Bce => ClassLoss::Bce,
            StageLoss::Focal => ClassLoss::focal(),
        }
    }
}

impl Stage {
    pub fn opts(&self) -> FitOpts {
        FitOpts {
            cycle_len: self.cycle_len,
            cycle_mult: self.cycle_mult,
            use_clr: self.use_clr,
            keep_best: self.keep_best.clone(),
            early_stop: self.early_stop,
        }
    }

    /// Epochs this stage trains (as [`Learner::fit`] counts them).
    pub fn epochs(&self) -> usize {
        self.opts().epochs(self.n_cycle)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fr) = self.freeze_to {
            write!(f, "{fr}; ")?;
        }
        let each: Vec<String> = self.lrs.iter().map(|l| format!("{l:e}")).collect();
        let lrs = if each.len() == 1 { each[0].clone() } else { format!("[{}]", each.join(", ")) };
        write!(f, "fit({lrs}, {}", self.n_cycle)?;
        if let Some(cl) = self.cycle_len {
            write!(f, ", cycle_len={cl}")?;
        }
        if let Some(m) = self.cycle_mult {
            write!(f, ", cycle_mult={m}")?;
        }
        if let Some((d, c)) = self.use_clr {
            write!(f, ", use_clr=({d}, {c})")?;
        }
        write!(f, ")")?;
        if let Some(l) = self.class_loss {
            write!(f, " with {l:?} class loss")?;
        }
        if let Some(c) = &self.keep_best {
            write!(f, ", keeping the best epoch by {c}")?;
        }
        if let Some(es) = self.early_stop {
            write!(f, ", stopping after {} epochs without improvement (not before {})", es.patience, es.min_epochs)?;
        }
        Ok(())
    }
}

/// The lesson's detector schedule with `lr = 1e-2` and `lrs = [lr/100, lr/10, lr]`:
/// `fit(lr, 1, cycle_len=3, use_clr=(32,5))`; `freeze_to(-2)`, `fit(lrs/5, 1, cycle_len=5,
/// use_clr=(32,10))`; `unfreeze()`, `fit(lrs/10, 1, cycle_len=10, use_clr=(32,10))`.
pub fn lesson_stages() -> Vec<Stage> {
    task_stages(Task::SingleObject)
}

/// Each task's stages as its lesson runs them (`pascal.ipynb`, `pascal-multi.ipynb`):
/// - classifier: `lr = 2e-2`, `fit(lr, 1, cycle_len=1)`; `freeze_to(-2)`, `fit(lrs/5, 1,
///   cycle_len=1)`; `unfreeze()`, `fit(lrs/5, 1, cycle_len=2)` with `lrs = [lr/1000, lr/100, lr]`;
/// - regression (`head_reg4`): `lr = 2e-3`, `fit(lr, 2, cycle_len=1, cycle_mult=2)`;
///   `freeze_to(-2)`, `fit(lrs, 2, cycle_len=1, cycle_mult=2)`; `freeze_to(-3)`, `fit(lrs, 1,
///   cycle_len=2)` with `lrs = [lr/100, lr/10, lr]`;
/// - single_object: [`lesson_stages`]'s;
/// - multilabel: `lr = 2e-2`, `fit(lr, 1, cycle_len=3, use_clr=(32,5))`; `freeze_to(-2)`,
///   `fit(lrs/10, 1, cycle_len=5, use_clr=(32,5))` with `lrs = [lr/100, lr/10, lr]`;
/// - ssd (189 anchors): `lr = 1e-2`, `fit(lrs, 1, cycle_len=4, use_clr=(20,8))`;
///   `freeze_to(-2)`, `fit(lrs/2, 1, cycle_len=4, use_clr=(20,8))` (`prefocal`);
/// - ssd_focal: those two with BCE, then, continuing with `freeze_to(-2)` in effect, focal loss:
///   `fit(lrs, 1, cycle_len=10, use_clr=(20,10))` (`fl0`), `fit(lrs/4, 1, cycle_len=10,
///   use_clr=(20,10))` (`drop4`).
pub fn task_stages(task: Task) -> Vec<Stage> {
    let fit = |freeze_to, lrs: Vec<f64>, n_cycle, cycle_len, cycle_mult, use_clr| Stage {
        freeze_to,
        lrs,
        n_cycle,
        cycle_len: Some(cycle_len),
        cycle_mult,
        use_clr,
        class_loss: None,
        keep_best: None,
        early_stop: None,
    };
    let lrs = |lr: f64, d: [f64; 3], by: f64| d.iter().map(|x| lr / x / by).collect::<Vec<f64>>();
    let fr = |n| Some(FreezeTo::Group(n));
    match task {
        Task::Classifier => vec![
            fit(None, vec![2e-2], 1, 1, None, None),
            fit(fr(-2), lrs(2e-2, [1000.0, 100.0, 1.0], 5.0), 1, 1, None, None),
            fit(Some(FreezeTo::Unfreeze), lrs(2e-2, [1000.0, 100.0, 1.0], 5.0), 1, 2, None, None),
        ],
        Task::Regression => vec![
            fit(None, vec![2e-3], 2, 1, Some(2), None),
            fit(fr(-2), lrs(2e-3, [100.0, 10.0, 1.0], 1.0), 2, 1, Some(2), None),
            fit(fr(-3), lrs(2e-3, [100.0, 10.0, 1.0], 1.0), 1, 2, None, None),
        ],
        Task::SingleObject => vec![
            fit(None, vec![1e-2], 1, 3, None, Some((32.0, 5))),
            fit(fr(-2), lrs(1e-2, [100.0, 10.0, 1.0], 5.0), 1, 5, None, Some((32.0, 10))),
            fit(Some(FreezeTo::Unfreeze), lrs(1e-2, [100.0, 10.0, 1.0], 10.0), 1, 10, None, Some((32.0, 10))),
        ],
        Task::Multilabel => vec![
            fit(None, vec![2e-2], 1, 3, None, Some((32.0, 5))),
            fit(fr(-2), lrs(2e-2, [100.0, 10.0, 1.0], 10.0), 1, 5, None, Some((32.0, 5))),
        ],
        Task::Ssd => vec![
            fit(None, lrs(1e-2, [100.0, 10.0, 1.0], 1.0), 1, 4, None, Some((20.0, 8))),
            fit(fr(-2), lrs(1e-2, [100.0, 10.0, 1.0], 2.0), 1, 4, None, Some((20.0, 8))),
        ],
        Task::SsdFocal => {
            let mut s = task_stages(Task::Ssd);
            s[0].class_loss = Some(StageLoss::Bce);
            let mut fl0 = fit(None, lrs(1e-2, [100.0, 10.0, 1.0], 1.0), 1, 10, None, Some((20.0, 10)));
            fl0.class_loss = Some(StageLoss::Focal);
            s.push(fl0);
            s.push(fit(fr(-2), lrs(1e-2, [100.0, 10.0, 1.0], 4.0), 1, 10, None, Some((20.0, 10))));
            s
        }
    }
}

/// A training run. Every field has a default (lesson 8's detector); unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Free text, ignored (JSON has no comments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// A dataset in any format fastdet reads (a folder, or a COCO JSON file); default
    /// `fastdet::data::default_root()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// The split trained on (for data of one set, `"train"`: all of it; docs/data.md).
    pub split: String,
    /// The validation split the data gives (`"val"`); without it, the seeded `val_pct` of `split`
    /// (the lesson's rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_split: Option<String>,
    /// The data's format; detected when left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    pub task: Task,
    pub arch: Arch,
    /// ImageNet weights of the backbone (torchvision `.pth` or `.safetensors`); none = random.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    pub sz: u32,
    pub bs: usize,
    pub val_pct: f64,
    /// Seed of the validation split (`get_cv_idxs`).
    pub split_seed: u32,
    /// Seed of the weights' initialisation, dropout, shuffling and augmentation.
    pub seed: u64,
    pub augmentations: Vec<Aug>,
    pub crop: CropType,
    /// SSD tasks: how anchors are matched to objects (`"lesson"`, the default, or
    /// `"no_gt_lost"`, which never loses an object to another's anchor).
    pub matching: Matching,
    pub device: DeviceChoice,
    /// Mixed precision: autocast forward passes (fp16 on CUDA) and a gradient scaler
    /// ([`crate::learner::Learner::set_amp`]); off by default.
    pub amp: bool,
    pub stages: Vec<Stage>,
    /// Where the config was read from (for error messages); not part of the config.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            comment: None,
            data: None,
            split: "train".into(),
            val_split: None,
            format: None,
            task: Task::SingleObject,
            arch: Arch::ResNet34,
            weights: None,
            sz: 224,
            bs: 64,
            val_pct: 0.2,
            split_seed: 42,
            seed: 0,
            augmentations: lesson_augmentations(),
            crop: CropType::No,
            matching: Matching::Lesson,
            device: DeviceChoice::Auto,
            amp: false,
            stages: lesson_stages(),
            source: None,
        }
    }
}

/// Fields that may differ between a run and its resumption.
const RESUME_FREE_FIELDS: [&str; 3] = ["comment", "device", "amp"];

impl TrainConfig {
    /// Read and check a JSON config; errors name the file and the field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config = Self::from_json_str(&text).map_err(|e| Error::json(path, e))?;
        config.source = Some(path.to_path_buf());
        config.validate()?;
        Ok(config)
    }

    /// Parse JSON without checking values (see [`TrainConfig::validate`]).
    pub fn from_json_str(text: &str) -> std::result::Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let has_stages = value.get("stages").is_some();
        let mut config: Self = serde_json::from_value(value)?;
        if !has_stages {
            // Without stages a config runs its task's lesson schedule.
            config.stages = task_stages(config.task);
        }
        Ok(config)
    }

    fn origin(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "config".into(),
        }
    }

    pub(crate) fn invalid(&self, field: &str, problem: impl std::fmt::Display) -> Error {
        Error::Config { origin: self.origin(), field: field.into(), problem: problem.to_string() }
    }

    /// The dataset root: `data`, else [`crate::data::default_root`].
    pub fn data_root(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(crate::data::default_root)
    }

    /// Check every value (not the data itself, see [`TrainConfig::resolved`]).
    pub fn validate(&self) -> Result<()> {
        if self.split.is_empty() {
            return Err(self.invalid("split", "must not be empty"));
        }
        if self.val_split.as_ref().is_some_and(|v| *v == self.split) {
            return Err(self.invalid("val_split", "is the training split: validate on another one"));
        }
        if self.sz < 32 {
            return Err(
                self.invalid("sz", format!("{} is too small: the ResNet body needs at least 32 pixels", self.sz))
            );
        }
        if self.bs == 0 {
            return Err(self.invalid("bs", "the batch size must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.val_pct) {
            return Err(self.invalid("val_pct", format!("{} is not in [0, 1)", self.val_pct)));
        }
        if let Some(w) = &self.weights {
            if !w.is_file() {
                return Err(self.invalid(
                    "weights",
                    format!("{} not found (torchvision's resnet .pth, or .safetensors; leave `weights` out to start from random weights)", w.display()),
                ));
            }
        }
        tfms_from_model(self.sz, self.augmentations.clone(), self.crop, TfmY::Coord)
            .map_err(|e| self.invalid("augmentations", e))?;
        if self.stages.is_empty() {
            return Err(self.invalid("stages", "at least one stage is needed"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            let field = |name: &str| format!("stages[{i}].{name}");
            if s.lrs.len() != 1 && s.lrs.len() != N_GROUPS {
                return Err(self.invalid(
                    &field("lrs"),
                    format!(
                        "{} learning rates: give 1 (for every layer group) or {N_GROUPS} (one per group)",
                        s.lrs.len()
                    ),
                ));
            }
            if let Some(problem) = s.lrs.iter().find_map(|&l| check_lr(l).err()) {
                return Err(self.invalid(&field("lrs"), problem));
            }
            s.opts().validate(s.n_cycle, None).map_err(|(name, problem)| self.invalid(&field(name), problem))?;
            if let Some(FreezeTo::Group(n)) = s.freeze_to {
                if n.unsigned_abs() > N_GROUPS {
                    return Err(self.invalid(&field("freeze_to"), format!("{n}: there are {N_GROUPS} layer groups")));
                }
            }
            if let Some(c) = &s.keep_best {
                let metrics = self.task.parts(1, self.sz).metrics;
                let names: Vec<String> = ["val_loss", "trn_loss"]
                    .iter()
                    .map(|n| n.to_string())
                    .chain(metrics.iter().map(|m| m.name()))
                    .collect();
                if !names.iter().any(|n| n == c || n.split('(').next() == Some(c)) {
                    return Err(self.invalid(
                        &field("keep_best"),
                        format!(
                            "{c:?} is not a column of the {:?} task's epoch table ({})",
                            self.task,
                            names.join(", ")
                        ),
                    ));
                }
            }
            if s.class_loss.is_some() && !matches!(self.task, Task::Ssd | Task::SsdFocal) {
                return Err(
                    self.invalid(&field("class_loss"), format!("applies to the ssd tasks, not to {:?}", self.task))
                );
            }
        }
        Ok(())
    }

    /// The config with every default made explicit (the data root), as a run saves it.
    pub fn resolved(&self) -> Self {
        Self { data: Some(self.data_root()), ..self.clone() }
    }

    /// Fields (top-level names) whose values differ from `other`, ignoring `comment` and `device`.
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = serde_json::to_value(self.resolved()).unwrap_or_default();
        let b = serde_json::to_value(other.resolved()).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["(config)".into()] };
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| !RESUME_FREE_FIELDS.contains(&k.as_str()) && a.get(*k) != b.get(*k))
            .map(|k| {
                let show =
                    |v: Option<&serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
                let (x, y) = (show(b.get(k)), show(a.get(k)));
                if x.len() + y.len() < 120 {
                    format!("{k} (run: {x}, now: {y})")
                } else {
                    k.clone()
                }
            })
            .collect()
    }

    pub(crate) fn device(&self) -> Result<Device> {
        Ok(match self.device {
            DeviceChoice::Auto => crate::device::default_device(),
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda => {
                crate::device::load_cuda_backend();
                if !tch::Cuda::is_available() {
                    return Err(self.invalid(
                        "device",
                        "cuda was asked for but no CUDA device is usable (use \"auto\" or \"cpu\")",
                    ));
                }
                Device::Cuda(0)
            }
        })
    }

    /// Load the data and build a new learner (seeded with `seed`, frozen up to its head) that
    /// saves its weights in `models_dir`.
    pub fn learner(&self, models_dir: &Path) -> Result<Learner> {
        let root = self.data_root();
        let source = match self.format {
            Some(format) => DataSource::with_format(&root, format),
            None => DataSource::detect(&root),
        }
        .map_err(|e| self.invalid("data", e))?;
        let ds = source.open(&self.split).map_err(|e| self.invalid("split", e))?;
        if ds.is_empty() {
            return Err(self.invalid("data", format!("{} has no images", ds.source.display())));
        }
        let device = self.device()?;
        let tfms = tfms_from_model(self.sz, self.augmentations.clone(), self.crop, TfmY::Coord)
            .map_err(|e| self.invalid("augmentations", e))?;
        let opts =
            DataOpts { bs: self.bs, val_pct: self.val_pct, split_seed: self.split_seed, seed: self.seed, device };
        let data = match &self.val_split {
            Some(v) => {
                let val = source.open(v).map_err(|e| self.invalid("val_split", e))?;
                ImageData::from_split(ds, val, self.task.target(), tfms, opts)
                    .map_err(|e| self.invalid("val_split", e))?
            }
            None => ImageData::from_dataset(ds, self.task.target(), tfms, opts)?,
        };
        if data.trn_dl.is_empty() {
            return Err(self.invalid("val_pct", "leaves no training images"));
        }
        tch::manual_seed(self.seed as i64);
        let opts = LearnerOpts { arch: self.arch, weights: self.weights.clone(), models_dir: models_dir.into() };
        let mut learn = Learner::for_task(data, self.task, opts)?;
        learn.configure_ssd(|cfg| cfg.matching = self.matching)?;
        Ok(learn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::{RandomFlip, RandomRotate};

    #[test]
    fn empty_config_is_the_lesson() {
        let c = TrainConfig::from_json_str("{}").unwrap();
        assert_eq!(c, TrainConfig::default());
        assert_eq!(c.stages.len(), 3);
        assert_eq!(c.stages.iter().map(Stage::epochs).sum::<usize>(), 18);
        c.validate().unwrap();
    }

    #[test]
    fn round_trip_and_tagged_values() {
        let text = r#"{"arch": "resnet18", "task": "classifier", "crop": "random",
            "augmentations": [{"type": "flip"}, {"type": "rotate", "deg": 10}, {"type": "lighting", "b": 0.1, "c": 0.1}],
            "stages": [{"lrs": [0.01], "cycle_len": 1}, {"freeze_to": -2, "lrs": [1e-4, 1e-3, 1e-2]}, {"freeze_to": "unfreeze", "lrs": [1e-3], "use_clr": [32, 5], "cycle_len": 2}]}"#;
        let c = TrainConfig::from_json_str(text).unwrap();
        assert_eq!(c.augmentations[0], Aug::Flip(RandomFlip { p: 0.5 }));
        assert_eq!(c.augmentations[1], Aug::Rotate(RandomRotate { deg: 10.0, p: 0.75 }));
        assert_eq!(c.stages[1].freeze_to, Some(FreezeTo::Group(-2)));
        assert_eq!(c.stages[2].freeze_to, Some(FreezeTo::Unfreeze));
        assert_eq!(c.stages[2].use_clr, Some((32.0, 5)));
        let back = TrainConfig::from_json_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(c.differences(&back).is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected_everywhere() {
        for (text, field) in [
            (r#"{"lr": 1}"#, "lr"),
            (r#"{"stages": [{"lrs": [1], "cycle": 1}]}"#, "cycle"),
            (r#"{"augmentations": [{"type": "flip", "prob": 1}]}"#, "prob"),
            (r#"{"augmentations": [{"type": "zoom"}]}"#, "zoom"),
            (r#"{"stages": [{"lrs": [1], "freeze_to": "all"}]}"#, "all"),
        ] {
            let e = TrainConfig::from_json_str(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        let bad = |text: &str, field: &str| {
            let e = TrainConfig::from_json_str(text).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        };
        bad(r#"{"stages": [{"lrs": [1, 2]}]}"#, "stages[0].lrs");
        bad(r#"{"stages": [{"lrs": [1]}, {"lrs": [1], "n_cycle": 0}]}"#, "stages[1].n_cycle");
        bad(r#"{"stages": [{"lrs": [1], "use_clr": [32, 5]}]}"#, "stages[0].use_clr");
        bad(r#"{"stages": []}"#, "stages");
        bad(r#"{"bs": 0}"#, "bs");
        bad(r#"{"val_pct": 1}"#, "val_pct");
        bad(r#"{"sz": 8}"#, "sz");
        bad(r#"{"augmentations": [{"type": "flip", "p": 2}]}"#, "augmentations");
        bad(r#"{"weights": "/nonexistent/resnet34.pth"}"#, "weights");
        bad(r#"{"stages": [{"lrs": [1], "keep_best": "map"}]}"#, "stages[0].keep_best");
        bad(r#"{"stages": [{"lrs": [1], "early_stop": {"patience": 0}}]}"#, "stages[0].early_stop");
        // The SSD's table has map; the single-object detector's has detn_acc.
        for ok in [
            r#"{"task": "ssd", "stages": [{"lrs": [1], "keep_best": "map", "early_stop": {"patience": 2}}]}"#,
            r#"{"stages": [{"lrs": [1], "keep_best": "detn_acc", "early_stop": {"patience": 2, "min_epochs": 3}}]}"#,
        ] {
            let c = TrainConfig::from_json_str(ok).unwrap();
            c.validate().unwrap();
            let back = TrainConfig::from_json_str(&serde_json::to_string(&c).unwrap()).unwrap();
            assert_eq!(back.stages[0].opts(), c.stages[0].opts());
        }
    }

    #[test]
    fn each_task_defaults_to_its_lessons_stages() {
        let c = TrainConfig::from_json_str(r#"{"task": "ssd"}"#).unwrap();
        assert_eq!(c.stages.len(), 2);
        assert_eq!((c.stages[0].cycle_len, c.stages[0].use_clr), (Some(4), Some((20.0, 8))));
        assert!((c.stages[1].lrs[2] - 5e-3).abs() < 1e-15 && c.stages[1].freeze_to == Some(FreezeTo::Group(-2)));
        let r = TrainConfig::from_json_str(r#"{"task": "regression"}"#).unwrap();
        assert_eq!((r.stages[0].n_cycle, r.stages[0].cycle_mult, r.stages[0].epochs()), (2, Some(2), 3));
        // The detector's body trains at lr/100 and lr/10 (lrs/5 in stage 2).
        let d = TrainConfig::from_json_str("{}").unwrap();
        assert!((d.stages[1].lrs[0] - 2e-5).abs() < 1e-18 && (d.stages[1].lrs[1] - 2e-4).abs() < 1e-17);
        // ssd_focal: BCE first, then focal loss on the same model; the shipped lesson config.
        let f = TrainConfig::from_json_str(r#"{"task": "ssd_focal"}"#).unwrap();
        let losses: Vec<Option<StageLoss>> = f.stages.iter().map(|s| s.class_loss).collect();
        assert_eq!(losses, vec![Some(StageLoss::Bce), None, Some(StageLoss::Focal), None]);
        let shipped = TrainConfig::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/configs/ssd_lesson.json"));
        let shipped = match shipped {
            Ok(c) => c,
            // The shipped config names ImageNet weights the checkout may not have.
            Err(e) => {
                assert!(e.to_string().contains("weights"), "{e}");
                let text =
                    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/configs/ssd_lesson.json"))
                        .unwrap();
                TrainConfig::from_json_str(&text).unwrap()
            }
        };
        assert_eq!(shipped.stages.len(), f.stages.len());
        for (a, b) in shipped.stages.iter().zip(&f.stages) {
            assert_eq!(
                (a.freeze_to, a.cycle_len, a.use_clr, a.class_loss),
                (b.freeze_to, b.cycle_len, b.use_clr, b.class_loss)
            );
            assert!(
                a.lrs.iter().zip(&b.lrs).all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs()),
                "{:?} vs {:?}",
                a.lrs,
                b.lrs
            );
        }
        assert!(TrainConfig::from_json_str(r#"{"stages": [{"lrs": [1], "class_loss": "focal"}]}"#)
            .unwrap()
            .validate()
            .is_err());
    }
}
