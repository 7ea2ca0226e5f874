//! What a model minimises: lesson 8's losses (cross-entropy for the largest object's class,
//! L1 for its box, BCE for the multi-label classifier, `detn_loss` for the single-object
//! detector) and lesson 9's SSD loss ([`super::ssd_loss`], which needs the model's anchors:
//! [`super::Model::loss`] computes every loss), chosen by one value, [`Loss`].

use super::output::ModelOutput;
use crate::data::BatchTarget;
use crate::error::{Error, Result};
use tch::{Reduction, Tensor};

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
    /// Lesson 9's `ssd_loss` (loc + class, summed over images) of an SSD's output against
    /// `Boxes` targets in pixels, with the model's anchors and the config of its head
    /// (`HeadKind::Ssd`: one config, in one place); [`super::Model::loss`] computes it.
    /// (Checkpoints written before the config moved to the head stored it here too; it reads.)
    Ssd {},
}

impl Loss {
    /// `detn_loss` with the lesson's weight of 20 on the class term.
    pub fn detn(sz: f64) -> Self {
        Loss::Detn { sz, class_weight: 20.0 }
    }

    /// The loss of model outputs `out` against a batch's targets. The SSD's needs its model's
    /// anchors: [`super::Model::loss`].
    pub fn compute(&self, out: &ModelOutput, y: &BatchTarget) -> Result<Tensor> {
        check_output(&format!("{self:?}"), out, y)?;
        match (self, out, y) {
            (Loss::CrossEntropy, ModelOutput::Logits(o), BatchTarget::Class(c)) => Ok(o.cross_entropy_for_logits(c)),
            (Loss::L1, ModelOutput::Box(o), BatchTarget::Box(b)) => Ok(o.l1_loss(b, Reduction::Mean)),
            (Loss::Bce, ModelOutput::Logits(o), BatchTarget::MultiLabel(t)) => {
                Ok(o.binary_cross_entropy_with_logits::<Tensor>(t, None, None, Reduction::Mean))
            }
            (
                Loss::Detn { sz, class_weight },
                ModelOutput::Single { bbox: o, class: logits },
                BatchTarget::BoxClass { bbox, class },
            ) => Ok(detn_loss(o, logits, bbox, class, *sz, *class_weight)),
            (Loss::Ssd {}, ..) => {
                Err(Error::Invalid("the SSD loss needs the model's anchors: call Model::loss".into()))
            }
            (loss, _, y) => Err(mismatch(&format!("{loss:?}"), y)),
        }
    }
}

impl Loss {
    /// The names of the parts of [`Loss::per_image`].
    pub fn part_names(&self) -> Vec<&'static str> {
        match self {
            Loss::CrossEntropy => vec!["cross-entropy"],
            Loss::L1 => vec!["l1"],
            Loss::Bce => vec!["bce"],
            Loss::Detn { .. } => vec!["l1", "class"],
            Loss::Ssd { .. } => vec!["loc", "class"],
        }
    }

    /// Each image's loss, by part ([`Loss::part_names`]; the parts add up to the image's loss).
    /// [`Loss::compute`] is their mean over the batch, or their sum for the SSD (as the lesson's
    /// `ssd_loss` sums its images). The `Detn` class part includes its weight.
    pub fn per_image(&self, out: &ModelOutput, y: &BatchTarget) -> Result<Vec<Vec<f64>>> {
        check_output(&format!("{self:?}"), out, y)?;
        let rows = |t: Tensor| -> Result<Vec<f64>> {
            Ok(Vec::try_from(t.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Double))?)
        };
        let zip = |a: Vec<f64>, b: Vec<f64>| a.into_iter().zip(b).map(|(a, b)| vec![a, b]).collect::<Vec<_>>();
        let one = |a: Vec<f64>| a.into_iter().map(|a| vec![a]).collect::<Vec<_>>();
        let mean1 = |t: Tensor| t.mean_dim(&[1i64][..], false, tch::Kind::Float);
        let ce = |logits: &Tensor, c: &Tensor| {
            logits.log_softmax(1, tch::Kind::Float).nll_loss_nd::<Tensor>(c, None, Reduction::None, -100)
        };
        match (self, out, y) {
            (Loss::CrossEntropy, ModelOutput::Logits(o), BatchTarget::Class(c)) => Ok(one(rows(ce(o, c))?)),
            (Loss::L1, ModelOutput::Box(o), BatchTarget::Box(b)) => Ok(one(rows(mean1((o - b).abs()))?)),
            (Loss::Bce, ModelOutput::Logits(o), BatchTarget::MultiLabel(t)) => {
                Ok(one(rows(mean1(o.binary_cross_entropy_with_logits::<Tensor>(t, None, None, Reduction::None)))?))
            }
            (
                Loss::Detn { sz, class_weight },
                ModelOutput::Single { bbox: o, class: logits },
                BatchTarget::BoxClass { bbox, class },
            ) => {
                let bb = o.sigmoid() * *sz;
                Ok(zip(rows(mean1((bb - bbox).abs()))?, rows(ce(logits, class) * *class_weight)?))
            }
            (Loss::Ssd {}, ..) => {
                Err(Error::Invalid("the SSD loss needs the model's anchors: call Model::loss_per_image".into()))
            }
            (loss, _, y) => Err(mismatch(&format!("{loss:?}"), y)),
        }
    }
}

/// Model outputs that fit the batch's targets: the kind of output the targets need, as many
/// rows as images, 4 columns for a box, `C` class columns for multi-hot targets, and class
/// indices below the number of class columns (libtorch would abort on a mismatch instead of
/// returning an error). The class check reads the targets only where they are on the CPU (no
/// wait there); on a GPU nothing is read, the loader having made the classes from the
/// dataset's own class list.
pub(crate) fn check_output(what: &str, out: &ModelOutput, y: &BatchTarget) -> Result<()> {
    let b = y.len();
    // `[B, cols]`, any number of columns for `None`.
    let shape = |t: &Tensor, cols: Option<i64>| -> Result<()> {
        let size = t.size();
        if size.len() != 2 || size[0] != b || cols.is_some_and(|c| size[1] != c) {
            let expected = cols.map_or(format!("[{b}, C] for a batch of {b}"), |c| format!("[{b}, {c}]"));
            return Err(Error::Shape { what: format!("{what}: the model's output"), expected, found: size });
        }
        Ok(())
    };
    let classes_below = |c: &Tensor, n: i64| -> Result<()> {
        if c.numel() > 0 && c.device() == tch::Device::Cpu {
            let (lo, hi) = (i64::try_from(c.min())?, i64::try_from(c.max())?);
            if lo < 0 || hi >= n {
                return Err(Error::Invalid(format!(
                    "{what}: classes {lo}..={hi} of the targets, but the model has {n} class outputs"
                )));
            }
        }
        Ok(())
    };
    match (out, y) {
        (ModelOutput::Logits(o), BatchTarget::Class(c)) => {
            shape(o, None)?;
            classes_below(c, o.size()[1])
        }
        (ModelOutput::Box(o), BatchTarget::Box(_)) => shape(o, Some(4)),
        (ModelOutput::Single { bbox, class: logits }, BatchTarget::BoxClass { class, .. }) => {
            shape(bbox, Some(4))?;
            shape(logits, None)?;
            classes_below(class, logits.size()[1])
        }
        (ModelOutput::Logits(o), BatchTarget::MultiLabel(t)) if o.size() != t.size() => Err(Error::Shape {
            what: format!("{what}: the model's output"),
            expected: format!("{:?}", t.size()),
            found: o.size(),
        }),
        (ModelOutput::Logits(_), BatchTarget::MultiLabel(_)) | (ModelOutput::Ssd(_), BatchTarget::Boxes { .. }) => {
            Ok(())
        }
        (out, y) => Err(Error::Invalid(format!(
            "{what}: the model makes a {} output, which does not read {} targets",
            out.kind_name(),
            y.kind_name()
        ))),
    }
}

/// The error of a loss or metric given targets it does not read.
pub(crate) fn mismatch(what: &str, y: &BatchTarget) -> Error {
    Error::TargetMismatch { what: what.into(), target: y.kind_name() }
}

/// Lesson 8's `detn_loss`: `L1(sigmoid(bb) * sz, bbox) + w * CE(logits, class)`, where the
/// lesson's `out[:, :4]` is `bb` and `out[:, 4:]` is `logits`.
pub fn detn_loss(bb: &Tensor, logits: &Tensor, bbox: &Tensor, class: &Tensor, sz: f64, class_weight: f64) -> Tensor {
    (bb.sigmoid() * sz).l1_loss(bbox, Reduction::Mean) + logits.cross_entropy_for_logits(class) * class_weight
}
