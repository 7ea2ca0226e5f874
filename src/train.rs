//! `fastdet train`: a training run described by a JSON config, with a checkpoint after every
//! stage and `--resume` after an interruption.
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

use crate::data::{ImageData, Pascal, TargetKind};
use crate::error::{Error, Result};
use crate::learner::{FitOpts, Learner};
use crate::loss::{Loss, Metric};
use crate::model::{Arch, HeadKind, N_GROUPS};
use crate::transforms::{tfms_from_model, Aug, CropType, RandomFlip, RandomLighting, RandomRotate, TfmY};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::path::{Path, PathBuf};
use tch::Device;

/// What the model predicts (and so its head, loss and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Box and class of the largest object: `HeadKind::detection(20)`, `Loss::detn(sz)`,
    /// metrics `detn_acc`, `detn_l1`.
    Detection,
    /// Class of the largest object: the default head, cross-entropy, accuracy.
    Classifier,
    /// Box of the largest object: `head_reg4`, L1 loss.
    Regression,
    /// The classes present: the default head with sigmoid outputs, BCE, `accuracy_thresh(0.5)`.
    Multilabel,
    /// Every object: SSD with the lesson's 189 anchors (grids fitted to `sz`), BCE class loss.
    Ssd,
    /// The same with the lesson's focal loss (`alpha 0.25, gamma 1`).
    #[serde(rename = "ssd_focal")]
    SsdFocal,
}

/// Which annotation files of the data root to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// The lesson's `pascal_<split>2007.json`.
    Json,
    /// `VOCdevkit/VOC2007/Annotations/*.xml` listed in `ImageSets/Main/<split>.txt`.
    Voc,
}

/// The backbone, by torchvision's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchName {
    Resnet18,
    Resnet34,
    Resnet50,
}

impl From<ArchName> for Arch {
    fn from(a: ArchName) -> Arch {
        match a {
            ArchName::Resnet18 => Arch::ResNet18,
            ArchName::Resnet34 => Arch::ResNet34,
            ArchName::Resnet50 => Arch::ResNet50,
        }
    }
}

/// The last geometric step ([`CropType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crop {
    No,
    Center,
    Random,
}

impl From<Crop> for CropType {
    fn from(c: Crop) -> CropType {
        match c {
            Crop::No => CropType::No,
            Crop::Center => CropType::Center,
            Crop::Random => CropType::Random,
        }
    }
}

/// Where to train: `auto` is CUDA when usable, else the CPU (`FASTDET_DEVICE` still overrides it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda,
}

/// One augmentation: `{"type": "flip", "p": 0.5}`, `{"type": "rotate", "deg": 3, "p": 0.5}`,
/// `{"type": "lighting", "b": 0.05, "c": 0.05}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AugConfig {
    Flip {
        #[serde(default = "default_flip_p")]
        p: f32,
    },
    Rotate {
        deg: f32,
        #[serde(default = "default_rotate_p")]
        p: f32,
    },
    Lighting {
        b: f32,
        c: f32,
    },
}

fn default_flip_p() -> f32 {
    0.5
}
fn default_rotate_p() -> f32 {
    0.75
}

impl From<AugConfig> for Aug {
    fn from(a: AugConfig) -> Aug {
        match a {
            AugConfig::Flip { p } => Aug::Flip(RandomFlip { p }),
            AugConfig::Rotate { deg, p } => Aug::Rotate(RandomRotate { deg, p }),
            AugConfig::Lighting { b, c } => Aug::Lighting(RandomLighting { b, c }),
        }
    }
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
}

impl Stage {
    pub fn opts(&self) -> FitOpts {
        FitOpts { cycle_len: self.cycle_len, cycle_mult: self.cycle_mult, use_clr: self.use_clr }
    }

    /// Epochs this stage trains (as [`Learner::fit`] counts them).
    pub fn epochs(&self) -> usize {
        match (self.cycle_len, self.use_clr) {
            (None, _) => self.n_cycle,
            (Some(cl), Some(_)) => self.n_cycle * cl,
            (Some(cl), None) => {
                let m = self.cycle_mult.unwrap_or(1);
                (0..self.n_cycle).map(|j| cl * m.pow(j as u32)).sum()
            }
        }
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
        write!(f, ")")
    }
}

/// The lesson's detector schedule with `lr = 1e-2` and `lrs = [lr/1000, lr/100, lr]`:
/// `fit(lr, 1, cycle_len=3, use_clr=(32,5))`; `freeze_to(-2)`, `fit(lrs/5, 1, cycle_len=5,
/// use_clr=(32,10))`; `unfreeze()`, `fit(lrs/10, 1, cycle_len=10, use_clr=(32,10))`.
pub fn lesson_stages() -> Vec<Stage> {
    let stage = |freeze_to, lrs: Vec<f64>, cycle_len, clr| Stage {
        freeze_to,
        lrs,
        n_cycle: 1,
        cycle_len: Some(cycle_len),
        cycle_mult: None,
        use_clr: Some(clr),
    };
    vec![
        stage(None, vec![1e-2], 3, (32.0, 5)),
        stage(Some(FreezeTo::Group(-2)), vec![2e-6, 2e-5, 2e-3], 5, (32.0, 10)),
        stage(Some(FreezeTo::Unfreeze), vec![1e-6, 1e-5, 1e-3], 10, (32.0, 10)),
    ]
}

/// The lesson's final box augmentations: `RandomFlip()`, `RandomRotate(3, p=0.5)`,
/// `RandomLighting(0.05, 0.05)`.
pub fn lesson_augmentations() -> Vec<AugConfig> {
    vec![AugConfig::Flip { p: 0.5 }, AugConfig::Rotate { deg: 3.0, p: 0.5 }, AugConfig::Lighting { b: 0.05, c: 0.05 }]
}

/// A training run. Every field has a default (lesson 8's detector); unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Free text, ignored (JSON has no comments).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Dataset root in the lesson's layout; default `fastdet::data::default_root()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    pub split: String,
    pub format: DataFormat,
    pub task: Task,
    pub arch: ArchName,
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
    pub augmentations: Vec<AugConfig>,
    pub crop: Crop,
    pub device: DeviceChoice,
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
            format: DataFormat::Json,
            task: Task::Detection,
            arch: ArchName::Resnet34,
            weights: None,
            sz: 224,
            bs: 64,
            val_pct: 0.2,
            split_seed: 42,
            seed: 0,
            augmentations: lesson_augmentations(),
            crop: Crop::No,
            device: DeviceChoice::Auto,
            stages: lesson_stages(),
            source: None,
        }
    }
}

/// Fields that may differ between a run and its resumption.
const RESUME_FREE_FIELDS: [&str; 2] = ["comment", "device"];

impl TrainConfig {
    /// Read and check a JSON config; errors name the file and the field.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut config = Self::from_json_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        config.source = Some(path.to_path_buf());
        config.validate()?;
        Ok(config)
    }

    /// Parse JSON without checking values (see [`TrainConfig::validate`]).
    pub fn from_json_str(text: &str) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    fn origin(&self) -> String {
        match &self.source {
            Some(p) => format!("{}: ", p.display()),
            None => "config: ".into(),
        }
    }

    fn invalid(&self, field: &str, problem: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("{}{field}: {problem}", self.origin()))
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
        if self.sz < 32 {
            return Err(self.invalid("sz", format!("{} is too small: the ResNet body needs at least 32 pixels", self.sz)));
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
        let augs: Vec<Aug> = self.augmentations.iter().map(|&a| a.into()).collect();
        tfms_from_model(self.sz, augs, self.crop.into(), TfmY::Coord).map_err(|e| self.invalid("augmentations", e))?;
        if self.stages.is_empty() {
            return Err(self.invalid("stages", "at least one stage is needed"));
        }
        for (i, s) in self.stages.iter().enumerate() {
            let field = |name: &str| format!("stages[{i}].{name}");
            if s.lrs.len() != 1 && s.lrs.len() != N_GROUPS {
                return Err(self.invalid(
                    &field("lrs"),
                    format!("{} learning rates: give 1 (for every layer group) or {N_GROUPS} (one per group)", s.lrs.len()),
                ));
            }
            if let Some(bad) = s.lrs.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
                return Err(self.invalid(&field("lrs"), format!("{bad} is not a finite non-negative learning rate")));
            }
            if s.n_cycle == 0 {
                return Err(self.invalid(&field("n_cycle"), "must be at least 1"));
            }
            if s.cycle_len == Some(0) {
                return Err(self.invalid(&field("cycle_len"), "must be at least 1"));
            }
            if s.cycle_mult == Some(0) {
                return Err(self.invalid(&field("cycle_mult"), "must be at least 1"));
            }
            if let Some((div, cut)) = s.use_clr {
                if s.cycle_len.is_none() {
                    return Err(self.invalid(&field("use_clr"), "needs cycle_len (the length of the triangular cycle)"));
                }
                if s.cycle_mult.is_some() {
                    return Err(self.invalid(&field("cycle_mult"), "has no effect with use_clr: leave one out"));
                }
                if !(div.is_finite() && div >= 1.0) {
                    return Err(self.invalid(&field("use_clr"), format!("div {div} must be a number >= 1")));
                }
                if cut == 0 {
                    return Err(self.invalid(&field("use_clr"), "cut must be at least 1"));
                }
            }
            if let Some(FreezeTo::Group(n)) = s.freeze_to {
                if n.unsigned_abs() > N_GROUPS {
                    return Err(self.invalid(&field("freeze_to"), format!("{n}: there are {N_GROUPS} layer groups")));
                }
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
                let show = |v: Option<&serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
                let (x, y) = (show(b.get(k)), show(a.get(k)));
                if x.len() + y.len() < 120 {
                    format!("{k} (run: {x}, now: {y})")
                } else {
                    k.clone()
                }
            })
            .collect()
    }

    fn device(&self) -> Result<Device> {
        Ok(match self.device {
            DeviceChoice::Auto => crate::device::default_device(),
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda => {
                crate::device::load_cuda_backend();
                if !tch::Cuda::is_available() {
                    return Err(self.invalid("device", "cuda was asked for but no CUDA device is usable (use \"auto\" or \"cpu\")"));
                }
                Device::Cuda(0)
            }
        })
    }

    /// Target, head, loss and metrics of the task for `n` classes (20 for VOC).
    fn target(&self, n: i64) -> (TargetKind, HeadKind, Loss, Vec<Metric>) {
        let sz = self.sz as f64;
        match self.task {
            Task::Detection => (TargetKind::BoxClass, HeadKind::detection(n), Loss::detn(sz), vec![Metric::DetnAcc, Metric::DetnL1 { sz }]),
            Task::Classifier => (TargetKind::LargestClass, HeadKind::classifier(n), Loss::CrossEntropy, vec![Metric::Accuracy]),
            Task::Regression => (TargetKind::LargestBox, HeadKind::Reg4, Loss::L1, vec![]),
            Task::Multilabel => (TargetKind::MultiLabel, HeadKind::classifier(n), Loss::Bce, vec![Metric::AccuracyThresh(0.5)]),
            Task::Ssd | Task::SsdFocal => {
                let mut cfg = crate::ssd::SsdConfig::lesson_189(n);
                cfg.anchors.grids = cfg.head_grids(crate::model::feature_side(self.sz as i64));
                if self.task == Task::SsdFocal {
                    cfg = cfg.with_class_loss(crate::ssd::ClassLoss::focal());
                }
                (TargetKind::AllBoxes, HeadKind::Ssd(cfg.clone()), Loss::Ssd { cfg, sz }, vec![])
            }
        }
    }

    /// Load the data and build a new learner (seeded with `seed`, frozen up to its head).
    pub fn learner(&self) -> Result<Learner> {
        let root = self.data_root();
        let pascal = Pascal::open(&root).map_err(|e| self.invalid("data", e))?;
        let ds = match self.format {
            DataFormat::Json => pascal.json(&self.split),
            DataFormat::Voc => pascal.voc(&self.split),
        }
        .map_err(|e| self.invalid("data", e))?;
        if ds.is_empty() {
            return Err(self.invalid("data", format!("{} has no images", ds.source.display())));
        }
        let device = self.device()?;
        let (target, head, loss, metrics) = self.target(ds.classes.len() as i64);
        let augs: Vec<Aug> = self.augmentations.iter().map(|&a| a.into()).collect();
        let tfms = tfms_from_model(self.sz, augs, self.crop.into(), TfmY::Coord).map_err(|e| self.invalid("augmentations", e))?;
        let data = ImageData::from_dataset(ds, target, tfms, self.bs, self.val_pct, self.split_seed, self.seed, device)?;
        if data.trn_dl.is_empty() {
            return Err(self.invalid("val_pct", "leaves no training images"));
        }
        tch::manual_seed(self.seed as i64);
        Learner::new(data, self.arch.into(), head, loss, metrics, self.weights.as_deref())
    }
}

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
}

/// `progress.json`: what a run has done so far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub metric_names: Vec<String>,
    pub completed: Vec<StageRecord>,
    pub epochs: Vec<EpochRecord>,
}

impl Progress {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json { path: path.into(), source })
    }

    /// The epoch table, as the learner prints it, with a stage column.
    pub fn table(&self) -> String {
        let mut s = format!("{:>5} {:>5} {:>10} {:>10}", "stage", "epoch", "trn_loss", "val_loss");
        for m in &self.metric_names {
            s += &format!(" {m:>12}");
        }
        for r in &self.epochs {
            s += &format!("\n{:>5} {:>5} {:>10.6} {:>10.6}", r.stage, r.epoch, r.trn_loss, r.val_loss);
            for v in &r.metrics {
                s += &format!(" {v:>12.6}");
            }
        }
        s
    }
}

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
}

impl RunReport {
    pub fn already_complete(&self) -> bool {
        self.stages_run.is_empty()
    }
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_complete() {
            write!(f, "{}: all {} stages were already done; nothing trained. ", self.run_dir.display(), self.stages_total)?;
        }
        write!(f, "final (stage {}/{}):", self.stages_total, self.stages_total)?;
        let names = std::iter::once("val_loss".to_string()).chain(self.metric_names.iter().cloned());
        for (n, v) in names.zip(&self.result) {
            write!(f, " {n} {v:.6}")?;
        }
        write!(f, "  {:?}", self.result)
    }
}

/// The default run directory of a config file: `runs/<file stem>`.
pub fn default_run_dir(config_path: &Path) -> PathBuf {
    let stem = config_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    Path::new("runs").join(stem)
}

pub const CONFIG_FILE: &str = "config.json";
pub const PROGRESS_FILE: &str = "progress.json";

/// The checkpoint name of stage `k` (1-based), for [`Learner::save`]/[`Learner::load`].
pub fn checkpoint_name(stage: usize) -> String {
    format!("stage-{stage}")
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| Error::Json { path: path.into(), source })?;
    text.push('\n');
    crate::util::write_atomic(path, text.as_bytes())
}

/// A checked run directory: the resolved config and what was done so far.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub progress: Progress,
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
            return Err(Error::Invalid(format!(
                "{} already holds a run ({} exists): pass --resume to continue it, or choose another --run-dir",
                run_dir.display(),
                progress_path.display()
            )));
        }
        write_json(&config_path, &resolved)?;
        return Ok(Prepared { config: resolved, run_dir: run_dir.into(), progress: Progress::default(), resumed: false });
    }
    if config_path.exists() {
        let saved = TrainConfig::from_file(&config_path)?;
        let diff = resolved.differences(&saved);
        if !diff.is_empty() {
            return Err(Error::Invalid(format!(
                "cannot resume {}: {} differs from the run's {} in {}; resume with the run's config or choose another --run-dir",
                run_dir.display(),
                config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the config".into()),
                config_path.display(),
                diff.join(", ")
            )));
        }
    } else if has_progress {
        return Err(Error::Invalid(format!("cannot resume {}: it has {PROGRESS_FILE} but no {CONFIG_FILE}", run_dir.display())));
    }
    if !has_progress {
        println!("{}: no {PROGRESS_FILE} yet, starting from the first stage", run_dir.display());
        write_json(&config_path, &resolved)?;
        return Ok(Prepared { config: resolved, run_dir: run_dir.into(), progress: Progress::default(), resumed: false });
    }
    let progress = Progress::read(&progress_path)?;
    let bad = |problem: String| Error::Invalid(format!("{}: {problem}", progress_path.display()));
    if progress.completed.len() > resolved.stages.len() {
        return Err(bad(format!("{} stages completed but the config has {}", progress.completed.len(), resolved.stages.len())));
    }
    for (i, rec) in progress.completed.iter().enumerate() {
        if rec.stage != i + 1 {
            return Err(bad(format!("completed stage {} listed in position {}", rec.stage, i + 1)));
        }
    }
    if let Some(last) = progress.completed.last() {
        let ckpt = run_dir.join(&last.checkpoint);
        if !ckpt.is_file() {
            return Err(bad(format!("stage {} is completed but its checkpoint {} is missing", last.stage, ckpt.display())));
        }
    }
    Ok(Prepared { config: resolved, run_dir: run_dir.into(), progress, resumed: true })
}

/// A run in progress: the learner, the run directory and the progress so far.
pub struct Trainer {
    pub learner: Learner,
    pub config: TrainConfig,
    pub run_dir: PathBuf,
    pub progress: Progress,
    resumed_after: Option<usize>,
    stages_run: Vec<usize>,
}

impl Trainer {
    /// [`prepare`], then build the learner and, when resuming, load the last checkpoint.
    pub fn open(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<Self> {
        Self::from_prepared(prepare(config, run_dir, resume)?)
    }

    pub fn from_prepared(p: Prepared) -> Result<Self> {
        let Prepared { config, run_dir, progress, .. } = p;
        let mut learner = config.learner()?;
        learner.models_dir = run_dir.clone();
        let names = learner.recorder.metric_names.clone();
        if !progress.completed.is_empty() && progress.metric_names != names {
            return Err(Error::Invalid(format!(
                "{}: metrics {:?} are not this task's {:?}",
                run_dir.join(PROGRESS_FILE).display(),
                progress.metric_names,
                names
            )));
        }
        let progress = Progress { metric_names: names, ..progress };
        let nb = learner.data.trn_dl.len();
        for (i, s) in config.stages.iter().enumerate().skip(progress.completed.len()) {
            if let (Some((_, cut)), Some(cl)) = (s.use_clr, s.cycle_len) {
                if nb * cl < cut {
                    return Err(config.invalid(
                        &format!("stages[{i}].use_clr"),
                        format!(
                            "cut {cut} is more than the stage's {} iterations ({nb} batches x cycle_len {cl}): the triangular schedule would divide by zero; use a smaller cut, a larger cycle_len or a smaller bs",
                            nb * cl
                        ),
                    ));
                }
            }
        }
        let mut resumed_after = None;
        if let Some(last) = progress.completed.last() {
            // The freezing the completed stages left, then their last weights.
            for s in &config.stages[..progress.completed.len()] {
                apply_freeze(&mut learner, s.freeze_to);
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
        Ok(Self { learner, config, run_dir, progress, resumed_after, stages_run: vec![] })
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
        let before = self.learner.recorder.epochs.len();
        let result = self.learner.fit(stage.lrs.clone(), stage.n_cycle, stage.opts())?;
        let path = self.learner.save(&checkpoint_name(k))?;
        let rows = self.learner.recorder.epochs[before..].iter().map(|r| EpochRecord {
            stage: k,
            epoch: r.epoch,
            trn_loss: r.trn_loss,
            val_loss: r.val_loss,
            metrics: r.metrics.clone(),
        });
        self.progress.epochs.extend(rows);
        let checkpoint = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let record = StageRecord { stage: k, checkpoint, result, epochs_done: self.learner.epochs_done() };
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
        report(&self.run_dir, &self.config, &self.progress, self.stages_run.clone(), self.resumed_after)
    }
}

fn apply_freeze(learner: &mut Learner, f: Option<FreezeTo>) {
    match f {
        Some(FreezeTo::Group(n)) => learner.freeze_to(n),
        Some(FreezeTo::Unfreeze) => learner.unfreeze(),
        None => {}
    }
}

fn report(run_dir: &Path, config: &TrainConfig, progress: &Progress, stages_run: Vec<usize>, resumed_after: Option<usize>) -> RunReport {
    RunReport {
        run_dir: run_dir.into(),
        stages_total: config.stages.len(),
        stages_run,
        resumed_after,
        metric_names: progress.metric_names.clone(),
        result: progress.completed.last().map(|r| r.result.clone()).unwrap_or_default(),
    }
}

/// Train `config` in `run_dir`: every stage, or with `resume` the stages `progress.json` does
/// not list yet (nothing when the run is complete). See the module docs.
pub fn run(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<RunReport> {
    let prepared = prepare(config, run_dir, resume)?;
    if prepared.is_complete() {
        let r = report(run_dir, &prepared.config, &prepared.progress, vec![], prepared.progress.completed.last().map(|c| c.stage));
        println!("{}: all {} stages are done already (see {PROGRESS_FILE}); nothing to train", run_dir.display(), r.stages_total);
        println!("{}", prepared.progress.table());
        return Ok(r);
    }
    Trainer::from_prepared(prepared)?.run_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.augmentations[0], AugConfig::Flip { p: 0.5 });
        assert_eq!(c.augmentations[1], AugConfig::Rotate { deg: 10.0, p: 0.75 });
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
    }
}
