//! What a model predicts, and so what it is built from: each task's rules written once. A
//! [`Task`] gives the data's target ([`TargetKind`]), the head ([`HeadKind`]), the loss
//! ([`Loss`]) and the epoch metrics ([`Metric`]) of one of the lessons' models; `fastdet train`
//! and the notebooks both build their learners from it ([`crate::learner::Learner::for_task`]).

use crate::data::TargetKind;
use crate::metrics::Metric;
use crate::model::loss::Loss;
use crate::model::ssd::{ClassLoss, SsdConfig};
use crate::model::HeadKind;
use serde::{Deserialize, Serialize};

/// One of the lessons' models (`"task"` in a `fastdet train` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Box and class of the largest object (lesson 8's single-object detection): the detection
    /// head, `detn_loss`, metrics `detn_acc`, `detn_l1`. `"single_object"` in a config; the older
    /// `"detection"` still reads. (A [`crate::metrics::Detection`] is one detected box.)
    #[serde(rename = "single_object", alias = "detection")]
    SingleObject,
    /// Class of the largest object (lesson 8): fastai's default head, cross-entropy, accuracy.
    Classifier,
    /// Box of the largest object (lesson 8): `head_reg4`, L1 loss.
    Regression,
    /// The classes present (lesson 9): the default head with sigmoid outputs, BCE,
    /// `accuracy_thresh(0.5)`.
    Multilabel,
    /// Every object (lesson 9): SSD with the 189 anchors (grids fitted to `sz`), BCE class loss.
    Ssd,
    /// The same with the lesson's focal loss (`alpha 0.25, gamma 1`).
    #[serde(rename = "ssd_focal")]
    SsdFocal,
}

/// A task's target, head, loss and metrics, ready for [`crate::learner::Learner::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskParts {
    pub target: TargetKind,
    pub head: HeadKind,
    pub loss: Loss,
    pub metrics: Vec<Metric>,
}

/// `accuracy_thresh`'s threshold in the multi-label lesson.
pub const MULTILABEL_THRESH: f64 = 0.5;

impl Task {
    /// The dependent variable the data must hold.
    pub fn target(self) -> TargetKind {
        match self {
            Task::SingleObject => TargetKind::BoxClass,
            Task::Classifier => TargetKind::LargestClass,
            Task::Regression => TargetKind::LargestBox,
            Task::Multilabel => TargetKind::MultiLabel,
            Task::Ssd | Task::SsdFocal => TargetKind::AllBoxes,
        }
    }

    /// Head, loss and metrics for `n_classes` classes (20 for VOC) at input size `sz`.
    pub fn parts(self, n_classes: i64, sz: u32) -> TaskParts {
        let szf = sz as f64;
        let (head, loss, metrics) = match self {
            Task::SingleObject => {
                (HeadKind::detection(n_classes), Loss::detn(szf), vec![Metric::DetnAcc, Metric::DetnL1 { sz: szf }])
            }
            Task::Classifier => (HeadKind::classifier(n_classes), Loss::CrossEntropy, vec![Metric::Accuracy]),
            Task::Regression => (HeadKind::Reg4, Loss::L1, vec![]),
            Task::Multilabel => {
                (HeadKind::classifier(n_classes), Loss::Bce, vec![Metric::AccuracyThresh(MULTILABEL_THRESH)])
            }
            Task::Ssd | Task::SsdFocal => {
                let cfg = SsdConfig::lesson_189(n_classes).fitted_to(sz);
                let cfg = if self == Task::SsdFocal { cfg.with_class_loss(ClassLoss::focal()) } else { cfg };
                return TaskParts::ssd(cfg, sz);
            }
        };
        TaskParts { target: self.target(), head, loss, metrics }
    }
}

impl TaskParts {
    /// An SSD of one config, held by its head ([`HeadKind::Ssd`]); the loss ([`Loss::Ssd`])
    /// reads it from there. The grids must be the ones the head makes at `sz`
    /// ([`SsdConfig::fitted_to`]).
    pub fn ssd(cfg: SsdConfig, _sz: u32) -> Self {
        TaskParts {
            target: TargetKind::AllBoxes,
            head: HeadKind::Ssd(cfg),
            loss: Loss::Ssd {},
            metrics: vec![Metric::Map],
        }
    }
}
