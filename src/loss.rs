//! Losses of lesson 8 (and the metrics that go with them): cross-entropy for the largest
//! object's class, L1 for its box, BCE for the multi-label classifier, and `detn_loss` for the
//! single-object detector.

use crate::data::BatchTarget;
use crate::error::{Error, Result};
use tch::{Kind, Reduction, Tensor};

/// What a learner minimises.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// Softmax cross-entropy on class logits (`[B, C]` vs `[B]`).
    CrossEntropy,
    /// Mean absolute error of raw outputs against boxes in pixels (`nn.L1Loss`, with `head_reg4`).
    L1,
    /// Binary cross-entropy with logits against multi-hot targets (multi-label).
    Bce,
    /// Lesson 8's `detn_loss`: `L1(sigmoid(out[:, :4]) * sz, bbox) + class_weight * CE(out[:, 4:], class)`.
    Detn { sz: f64, class_weight: f64 },
    /// Lesson 9's `ssd_loss` (loc + class, summed over images) on the packed output of a
    /// `HeadKind::Ssd` head, against `Boxes` targets in pixels of `sz x sz` images
    /// ([`crate::ssd::ssd_loss`]).
    Ssd { cfg: crate::ssd::SsdConfig, sz: f64 },
}

impl Loss {
    /// `detn_loss` with the lesson's weight of 20 on the class term.
    pub fn detn(sz: f64) -> Self {
        Loss::Detn { sz, class_weight: 20.0 }
    }

    /// The loss of model outputs `out` against a batch's targets.
    pub fn compute(&self, out: &Tensor, y: &BatchTarget) -> Result<Tensor> {
        match (self, y) {
            (Loss::CrossEntropy, BatchTarget::Class(c)) => Ok(out.cross_entropy_for_logits(c)),
            (Loss::L1, BatchTarget::Box(b)) => Ok(out.l1_loss(b, Reduction::Mean)),
            (Loss::Bce, BatchTarget::MultiLabel(t)) => {
                Ok(out.binary_cross_entropy_with_logits::<Tensor>(t, None, None, Reduction::Mean))
            }
            (Loss::Detn { sz, class_weight }, BatchTarget::BoxClass { bbox, class }) => {
                Ok(detn_loss(out, bbox, class, *sz, *class_weight))
            }
            (Loss::Ssd { cfg, sz }, BatchTarget::Boxes { bbox, class, n_objects }) => {
                let out = crate::ssd::SsdOutput::unpack(out, cfg.n_classes)?;
                let anchors = crate::anchors::Anchors::new(&cfg.anchors, out.class_logits.device());
                Ok(crate::ssd::ssd_loss(&out, bbox, class, Some(n_objects), *sz, &anchors, cfg)?.total())
            }
            (loss, y) => Err(mismatch(&format!("{loss:?}"), y)),
        }
    }
}

pub(crate) fn mismatch(what: &str, y: &BatchTarget) -> Error {
    let kind = match y {
        BatchTarget::Class(_) => "Class",
        BatchTarget::Box(_) => "Box",
        BatchTarget::BoxClass { .. } => "BoxClass",
        BatchTarget::MultiLabel(_) => "MultiLabel",
        BatchTarget::Boxes { .. } => "Boxes",
    };
    Error::Invalid(format!("{what} does not apply to a {kind} target (check the dataset's TargetKind)"))
}

/// Lesson 8: `L1(sigmoid(out[:, :4]) * sz, bbox) + w * CE(out[:, 4:], class)`.
pub fn detn_loss(out: &Tensor, bbox: &Tensor, class: &Tensor, sz: f64, class_weight: f64) -> Tensor {
    let bb = out.narrow(1, 0, 4).sigmoid() * sz; // [B, 4] in pixels
    let logits = out.narrow(1, 4, out.size()[1] - 4); // [B, C]
    bb.l1_loss(bbox, Reduction::Mean) + logits.cross_entropy_for_logits(class) * class_weight
}

/// A number reported after each epoch, on the validation set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Metric {
    /// Share of argmax predictions equal to the class.
    Accuracy,
    /// fastai `accuracy_thresh(t)`: share of `sigmoid(out) > t` equal to the multi-hot target.
    AccuracyThresh(f64),
    /// Lesson 8 `detn_acc`: class accuracy of `out[:, 4:]`.
    DetnAcc,
    /// Lesson 8 `detn_l1`: `L1(sigmoid(out[:, :4]) * sz, bbox)` in pixels.
    DetnL1 { sz: f64 },
}

impl Metric {
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::AccuracyThresh(t) => format!("accuracy_thresh({t})"),
            Metric::DetnAcc => "detn_acc".into(),
            Metric::DetnL1 { .. } => "detn_l1".into(),
        }
    }

    pub fn compute(&self, out: &Tensor, y: &BatchTarget) -> Result<f64> {
        let acc = |logits: &Tensor, c: &Tensor| logits.argmax(-1, false).eq_tensor(c).to_kind(Kind::Float).mean(Kind::Float);
        let t = match (self, y) {
            (Metric::Accuracy, BatchTarget::Class(c)) => acc(out, c),
            (Metric::AccuracyThresh(th), BatchTarget::MultiLabel(t)) => {
                out.sigmoid().gt(*th).to_kind(Kind::Float).eq_tensor(t).to_kind(Kind::Float).mean(Kind::Float)
            }
            (Metric::DetnAcc, BatchTarget::BoxClass { class, .. }) => acc(&out.narrow(1, 4, out.size()[1] - 4), class),
            (Metric::DetnL1 { sz }, BatchTarget::BoxClass { bbox, .. }) => {
                (out.narrow(1, 0, 4).sigmoid() * *sz).l1_loss(bbox, Reduction::Mean)
            }
            (m, y) => return Err(mismatch(&m.name(), y)),
        };
        Ok(f64::try_from(t)?)
    }
}
