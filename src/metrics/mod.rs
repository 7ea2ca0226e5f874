//! Numbers that say how well a model does: the epoch metrics of the lessons ([`Metric`]:
//! accuracy, `accuracy_thresh`, `detn_acc`, `detn_l1`), computed on every validation batch, and
//! detection mAP on a whole dataset ([`ap`]: VOC07, VOC and COCO, beyond the lesson).

pub mod ap;
pub mod confusion;
pub mod epoch_map;

pub use ap::{
    coco_summary, evaluate, load_coco_results, save_coco_results, voc_ap, ApMetric, ApTable, ClassAp, CocoSummary,
    Detection,
};
pub use confusion::{confusion, match_image, Confused, Confusion, ImageErrors, Outcome};
pub use epoch_map::WholeSetMetrics;

use crate::data::BatchTarget;
use crate::error::Result;
use crate::model::loss::{check_output, mismatch};
use crate::model::ModelOutput;
use tch::{Kind, Reduction, Tensor};

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
    /// An SSD's VOC07 mAP on the whole validation split after the lesson's NMS with
    /// [`crate::nms::NmfOpts::evaluation`] (beyond the lesson; [`epoch_map`]). Not a mean over
    /// batches: [`Metric::per_batch`] is false.
    Map,
}

impl Metric {
    pub fn name(&self) -> String {
        match self {
            Metric::Accuracy => "accuracy".into(),
            Metric::AccuracyThresh(t) => format!("accuracy_thresh({t})"),
            Metric::DetnAcc => "detn_acc".into(),
            Metric::DetnL1 { .. } => "detn_l1".into(),
            Metric::Map => "map".into(),
        }
    }

    /// Whether a larger value is better (accuracies, mAP) or a smaller one (`detn_l1`): what
    /// keeping the best epoch by this metric compares.
    pub fn higher_is_better(&self) -> bool {
        !matches!(self, Metric::DetnL1 { .. })
    }

    /// Whether the metric is a mean over validation batches ([`Metric::compute_tensor`]), or is
    /// computed on the whole validation set at once ([`WholeSetMetrics`]: [`Metric::Map`]).
    pub fn per_batch(&self) -> bool {
        !matches!(self, Metric::Map)
    }

    /// The metric of one batch, read on the host.
    pub fn compute(&self, out: &ModelOutput, y: &BatchTarget) -> Result<f64> {
        Ok(f64::try_from(self.compute_tensor(out, y)?)?)
    }

    /// The metric of one batch as a scalar tensor on the batch's device (no host read on a GPU:
    /// a validation pass sums these and reads the total once; `check_output` reads class targets
    /// only when they are on the CPU).
    pub fn compute_tensor(&self, out: &ModelOutput, y: &BatchTarget) -> Result<Tensor> {
        check_output(&self.name(), out, y)?;
        let acc =
            |logits: &Tensor, c: &Tensor| logits.argmax(-1, false).eq_tensor(c).to_kind(Kind::Float).mean(Kind::Float);
        let t = match (self, out, y) {
            (Metric::Accuracy, ModelOutput::Logits(o), BatchTarget::Class(c)) => acc(o, c),
            (Metric::AccuracyThresh(th), ModelOutput::Logits(o), BatchTarget::MultiLabel(t)) => {
                o.sigmoid().gt(*th).to_kind(Kind::Float).eq_tensor(t).to_kind(Kind::Float).mean(Kind::Float)
            }
            (Metric::DetnAcc, ModelOutput::Single { class: logits, .. }, BatchTarget::BoxClass { class, .. }) => {
                acc(logits, class)
            }
            (Metric::DetnL1 { sz }, ModelOutput::Single { bbox: bb, .. }, BatchTarget::BoxClass { bbox, .. }) => {
                (bb.sigmoid() * *sz).l1_loss(bbox, Reduction::Mean)
            }
            (Metric::Map, _, _) => {
                return Err(crate::error::Error::Invalid(
                    "map is computed on the whole validation set (WholeSetMetrics), not on one batch".into(),
                ))
            }
            (m, _, y) => return Err(mismatch(&m.name(), y)),
        };
        Ok(t)
    }
}
