//! Where a trained model is wrong: the loss of every validation image, by part, and the images
//! with the largest and the smallest (fastai's `ClassificationInterpretation.top_losses`, for
//! every model of the lessons, detectors included). The pictures are in [`crate::show`]
//! (`plot_top_losses`, ground truth beside prediction).

use crate::data::{Batch, DataLoader, Dataset};
use crate::error::{Error, Result};
use crate::learner::Learner;
use crate::metrics::confusion::{confusion, Confusion};
use crate::metrics::Detection;
use crate::model::{ModelOutput, ModelSpec};
use crate::nms::NmfOpts;
use tch::Device;

/// Every validation image's loss and the model's output for it.
pub struct Interpretation {
    /// What the model is (its classes, size, loss, how its output reads).
    pub spec: ModelSpec,
    /// Names of the parts of each loss ([`crate::model::Loss::part_names`]).
    pub part_names: Vec<&'static str>,
    /// Per validation image, in the loader's order: its loss by part.
    pub losses: Vec<Vec<f64>>,
    /// The dataset index of each image.
    pub indices: Vec<usize>,
    /// The validation loader the images come from.
    pub dl: DataLoader,
    /// The model's outputs, one row per image (on the CPU).
    pub outputs: ModelOutput,
}

impl std::fmt::Debug for Interpretation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interpretation({} images, loss parts {:?})", self.losses.len(), self.part_names)
    }
}

impl Interpretation {
    /// Run the learner over its validation set (eval mode) and keep every image's loss. A
    /// non-finite loss is an error naming the image.
    pub fn from_learner(learn: &Learner) -> Result<Self> {
        Self::from_loader(learn, &learn.data.val_dl)
    }

    /// The same over any loader of the learner's kind of targets.
    pub fn from_loader(learn: &Learner, dl: &DataLoader) -> Result<Self> {
        let (mut losses, mut indices, mut outs) = (vec![], vec![], vec![]);
        for batch in dl.iter(0) {
            let batch = batch?;
            let out = learn.predict_batch(&batch.x);
            let per = learn.model.loss_per_image(&out, &batch.y)?;
            for (row, &idx) in per.iter().zip(&batch.indices) {
                if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                    let name = &dl.dataset.data.images[idx].file_name;
                    return Err(Error::Invalid(format!(
                        "the loss of validation image {name} is {v}: the model's output is not finite there"
                    )));
                }
            }
            losses.extend(per);
            indices.extend(batch.indices.iter().copied());
            outs.push(out.to_device(Device::Cpu));
        }
        if losses.is_empty() {
            return Err(Error::Invalid("interpretation: the validation set is empty".into()));
        }
        Ok(Self {
            spec: learn.model.spec.clone(),
            part_names: learn.model.spec.loss.part_names(),
            losses,
            indices,
            dl: dl.clone(),
            outputs: ModelOutput::cat(&outs)?,
        })
    }

    pub fn len(&self) -> usize {
        self.losses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.losses.is_empty()
    }

    /// The loss of image `pos` (the sum of its parts).
    pub fn total(&self, pos: usize) -> f64 {
        self.losses[pos].iter().sum()
    }

    /// Positions of the `k` images with the largest loss, largest first (ties: loader order).
    pub fn top_losses(&self, k: usize) -> Vec<usize> {
        rank(&(0..self.len()).map(|i| self.total(i)).collect::<Vec<_>>(), k, true)
    }

    /// Positions of the `k` images with the smallest loss, smallest first: what the model gets
    /// most right.
    pub fn least_losses(&self, k: usize) -> Vec<usize> {
        rank(&(0..self.len()).map(|i| self.total(i)).collect::<Vec<_>>(), k, false)
    }

    /// `"loss 12.31 (loc 0.41, class 11.90)"` for image `pos`.
    pub fn caption(&self, pos: usize) -> String {
        let mut s = format!("loss {:.3}", self.total(pos));
        if self.part_names.len() > 1 {
            let parts: Vec<String> =
                self.part_names.iter().zip(&self.losses[pos]).map(|(n, v)| format!("{n} {v:.3}")).collect();
            s += &format!(" ({})", parts.join(", "));
        }
        s
    }

    /// The images at `positions` as one batch (transformed as for validation) and the model's
    /// outputs for them.
    pub fn batch(&self, positions: &[usize]) -> Result<(Batch, ModelOutput)> {
        if let Some(&bad) = positions.iter().find(|&&p| p >= self.len()) {
            return Err(Error::Invalid(format!("image {bad} of {} validation images", self.len())));
        }
        // Loader positions are positions in the dataset's indices; the loader's order is the
        // dataset's (validation loaders do not shuffle).
        if let Some(&p) = positions.iter().find(|&&p| self.dl.dataset.indices.get(p) != Some(&self.indices[p])) {
            return Err(Error::Invalid(format!(
                "interpretation: image {p} is not where the loader had it (a shuffling loader?)"
            )));
        }
        let batch = self.dl.batch_of(positions)?;
        let rows: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let out = self.outputs.index_select(&rows);
        Ok((batch, out))
    }
}

impl Interpretation {
    /// The validation images' ground truth (the images of the loader, in its order).
    pub fn ground_truth(&self) -> Dataset {
        self.dl.dataset.data.subset(&self.indices)
    }

    /// An SSD's detections on every validation image after the lesson's post-processing,
    /// boxes scaled back to each image's own size (as [`crate::detect::detections`]).
    pub fn detections(&self, opts: NmfOpts) -> Result<Vec<Detection>> {
        let found = self.spec.detections(&self.outputs, opts, usize::MAX)?;
        let sz = self.dl.dataset.tfms.sz as f32;
        Ok(crate::detect::to_image_detections(&self.dl.dataset.data, &self.indices, found, sz))
    }

    /// An SSD's detection confusion matrix on the validation images: detections after the
    /// lesson's NMS scoring at least `score_thresh`, matched by VOC's rule.
    pub fn confusion(&self, score_thresh: f32) -> Result<Confusion> {
        confusion(&self.ground_truth(), &self.detections(NmfOpts::default())?, score_thresh)
    }
}

/// Positions of the `k` largest (or smallest) values, ties in order.
pub fn rank(values: &[f64], k: usize, largest: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| {
        let o = values[a].total_cmp(&values[b]);
        (if largest { o.reverse() } else { o }).then(a.cmp(&b))
    });
    order.truncate(k);
    order
}
