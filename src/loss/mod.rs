//! What a learner minimises: lesson 8's losses (cross-entropy for the largest object's class,
//! L1 for its box, BCE for the multi-label classifier, `detn_loss` for the single-object
//! detector) and lesson 9's SSD loss ([`ssd`]), chosen by one value, [`Loss`].

pub mod ssd;

use crate::data::BatchTarget;
use crate::error::{Error, Result};
use crate::model::ssd::{SsdConfig, SsdOutput};
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
    /// Lesson 9's `ssd_loss` (loc + class, summed over images) on the packed output of a
    /// `HeadKind::Ssd` head, against `Boxes` targets in pixels of `sz x sz` images
    /// ([`ssd::ssd_loss`]).
    Ssd { cfg: SsdConfig, sz: f64 },
}

impl Loss {
    /// `detn_loss` with the lesson's weight of 20 on the class term.
    pub fn detn(sz: f64) -> Self {
        Loss::Detn { sz, class_weight: 20.0 }
    }

    /// The loss of model outputs `out` against a batch's targets.
    pub fn compute(&self, out: &Tensor, y: &BatchTarget) -> Result<Tensor> {
        if !matches!(self, Loss::Ssd { .. }) {
            check_output(&format!("{self:?}"), out, y)?;
        }
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
                let out = SsdOutput::unpack(out, cfg.n_classes)?;
                let anchors = crate::anchors::Anchors::new(&cfg.anchors, out.class_logits.device());
                Ok(ssd::ssd_loss(&out, bbox, class, Some(n_objects), *sz, &anchors, cfg)?.total())
            }
            (loss, y) => Err(mismatch(&format!("{loss:?}"), y)),
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
    pub fn per_image(&self, out: &Tensor, y: &BatchTarget) -> Result<Vec<Vec<f64>>> {
        if !matches!(self, Loss::Ssd { .. }) {
            check_output(&format!("{self:?}"), out, y)?;
        }
        let rows = |t: Tensor| -> Result<Vec<f64>> {
            Ok(Vec::try_from(t.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Double))?)
        };
        let zip = |a: Vec<f64>, b: Vec<f64>| a.into_iter().zip(b).map(|(a, b)| vec![a, b]).collect::<Vec<_>>();
        let one = |a: Vec<f64>| a.into_iter().map(|a| vec![a]).collect::<Vec<_>>();
        let mean1 = |t: Tensor| t.mean_dim(&[1i64][..], false, tch::Kind::Float);
        match (self, y) {
            (Loss::CrossEntropy, BatchTarget::Class(c)) => Ok(one(rows(
                out.log_softmax(1, tch::Kind::Float).nll_loss_nd::<Tensor>(c, None, Reduction::None, -100),
            )?)),
            (Loss::L1, BatchTarget::Box(b)) => Ok(one(rows(mean1((out - b).abs()))?)),
            (Loss::Bce, BatchTarget::MultiLabel(t)) => {
                Ok(one(rows(mean1(out.binary_cross_entropy_with_logits::<Tensor>(t, None, None, Reduction::None)))?))
            }
            (Loss::Detn { sz, class_weight }, BatchTarget::BoxClass { bbox, class }) => {
                let bb = out.narrow(1, 0, 4).sigmoid() * *sz;
                let logits = out.narrow(1, 4, out.size()[1] - 4);
                let ce =
                    logits.log_softmax(1, tch::Kind::Float).nll_loss_nd::<Tensor>(class, None, Reduction::None, -100)
                        * *class_weight;
                Ok(zip(rows(mean1((bb - bbox).abs()))?, rows(ce)?))
            }
            (Loss::Ssd { cfg, sz }, BatchTarget::Boxes { bbox, class, n_objects }) => {
                let out = SsdOutput::unpack(out, cfg.n_classes)?;
                let anchors = crate::anchors::Anchors::new(&cfg.anchors, out.class_logits.device());
                ssd::ssd_loss_per_image(&out, bbox, class, Some(n_objects), *sz, &anchors, cfg)?
                    .into_iter()
                    .map(|p| Ok(vec![f64::try_from(&p.loc)?, f64::try_from(&p.class)?]))
                    .collect()
            }
            (loss, y) => Err(mismatch(&format!("{loss:?}"), y)),
        }
    }
}

/// Model outputs `[B, n]` that fit the batch's targets: as many rows as images, 4 columns for a
/// box, `4 + C` for box and class, `C` for multi-hot targets, and class indices below the
/// number of class columns (libtorch would abort on a mismatch instead of returning an error).
/// The class check reads the targets only where they are on the CPU (no wait there); on a GPU
/// nothing is read, the loader having made the classes from the dataset's own class list.
pub(crate) fn check_output(what: &str, out: &Tensor, y: &BatchTarget) -> Result<()> {
    let size = out.size();
    let bad =
        |expected: String| Error::Shape { what: format!("{what}: the model's output"), expected, found: size.clone() };
    let b = y.len();
    if size.len() != 2 || size[0] != b {
        return Err(bad(format!("[{b}, n] for a batch of {b}")));
    }
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
    match y {
        BatchTarget::Class(c) => classes_below(c, size[1]),
        BatchTarget::Box(_) if size[1] != 4 => Err(bad(format!("[{b}, 4]"))),
        BatchTarget::Box(_) => Ok(()),
        BatchTarget::BoxClass { class, .. } if size[1] > 4 => classes_below(class, size[1] - 4),
        BatchTarget::BoxClass { .. } => Err(bad(format!("[{b}, 4 + C]"))),
        BatchTarget::MultiLabel(t) if t.size() != size => Err(bad(format!("{:?}", t.size()))),
        BatchTarget::MultiLabel(_) => Ok(()),
        BatchTarget::Boxes { .. } => Ok(()),
    }
}

/// The error of a loss or metric given targets it does not read.
pub(crate) fn mismatch(what: &str, y: &BatchTarget) -> Error {
    Error::TargetMismatch { what: what.into(), target: y.kind_name() }
}

/// Lesson 8: `L1(sigmoid(out[:, :4]) * sz, bbox) + w * CE(out[:, 4:], class)`.
pub fn detn_loss(out: &Tensor, bbox: &Tensor, class: &Tensor, sz: f64, class_weight: f64) -> Tensor {
    let bb = out.narrow(1, 0, 4).sigmoid() * sz; // [B, 4] in pixels
    let logits = out.narrow(1, 4, out.size()[1] - 4); // [B, C]
    bb.l1_loss(bbox, Reduction::Mean) + logits.cross_entropy_for_logits(class) * class_weight
}
