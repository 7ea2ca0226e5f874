//! What a model returns for a batch, typed by what it predicts: a class's logits, a box, the
//! single-object detector's box and class, or the SSD's class logits and box offsets per anchor.
//! The lessons' heads make them in one layer each (lesson 8's detection head ends in one
//! `Linear(256, 4 + C)`); [`ModelOutput::packed`] gives that one tensor back where a golden test
//! compares it with PyTorch's.

use super::ssd::SsdOutput;
use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// A model's output for a batch of `B` images.
#[derive(Debug)]
pub enum ModelOutput {
    /// Class logits `[B, C]`: the classifier (softmax) and the multi-label classifier (sigmoid).
    Logits(Tensor),
    /// The largest object's box `[B, 4]` in pixels (`head_reg4`).
    Box(Tensor),
    /// Lesson 8's single-object detector: box activations `[B, 4]` (`sigmoid * sz` = pixels) and
    /// class logits `[B, C]`.
    Single { bbox: Tensor, class: Tensor },
    /// Lesson 9's SSD: per anchor, class logits and box offsets.
    Ssd(SsdOutput),
}

impl ModelOutput {
    /// Its tensors, in the order [`ModelOutput::packed`] concatenates them.
    fn parts(&self) -> Vec<&Tensor> {
        match self {
            ModelOutput::Logits(t) | ModelOutput::Box(t) => vec![t],
            ModelOutput::Single { bbox, class } => vec![bbox, class],
            ModelOutput::Ssd(o) => vec![&o.box_offsets, &o.class_logits],
        }
    }

    /// The same kind of output made of `f` applied to each tensor.
    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Self {
        match self {
            ModelOutput::Logits(t) => ModelOutput::Logits(f(t)),
            ModelOutput::Box(t) => ModelOutput::Box(f(t)),
            ModelOutput::Single { bbox, class } => ModelOutput::Single { bbox: f(bbox), class: f(class) },
            ModelOutput::Ssd(o) => {
                ModelOutput::Ssd(SsdOutput { class_logits: f(&o.class_logits), box_offsets: f(&o.box_offsets) })
            }
        }
    }

    /// Images in the batch.
    pub fn len(&self) -> i64 {
        self.parts()[0].size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        self.parts()[0].device()
    }

    /// On `device`.
    pub fn to_device(&self, device: Device) -> Self {
        self.map(|t| t.to_device(device))
    }

    /// In fp32 (outputs of a mixed-precision forward pass are fp16).
    pub fn float(&self) -> Self {
        self.map(|t| t.to_kind(Kind::Float))
    }

    /// Without gradient.
    pub fn detach(&self) -> Self {
        self.map(|t| t.detach())
    }

    /// A view sharing the tensors.
    pub fn shallow_clone(&self) -> Self {
        self.map(|t| t.shallow_clone())
    }

    /// The rows (images) `rows` of the batch.
    pub fn index_select(&self, rows: &[i64]) -> Self {
        let idx = Tensor::from_slice(rows).to_device(self.device());
        self.map(|t| t.index_select(0, &idx))
    }

    /// Image `i` alone (a batch of one).
    pub fn image(&self, i: i64) -> Self {
        self.map(|t| t.narrow(0, i, 1))
    }

    /// The outputs of several batches of one model, one after the other.
    pub fn cat(outs: &[ModelOutput]) -> Result<Self> {
        let first = outs.first().ok_or_else(|| Error::Invalid("no model outputs to concatenate".into()))?;
        let all = |k: usize| -> Result<Tensor> {
            let ts: Vec<&Tensor> = outs
                .iter()
                .map(|o| {
                    if std::mem::discriminant(o) != std::mem::discriminant(first) {
                        return Err(Error::Invalid(format!(
                            "cannot concatenate a {} output with a {} output",
                            o.kind_name(),
                            first.kind_name()
                        )));
                    }
                    Ok(o.parts()[k])
                })
                .collect::<Result<_>>()?;
            Ok(Tensor::cat(&ts, 0))
        };
        Ok(match first {
            ModelOutput::Logits(_) => ModelOutput::Logits(all(0)?),
            ModelOutput::Box(_) => ModelOutput::Box(all(0)?),
            ModelOutput::Single { .. } => ModelOutput::Single { bbox: all(0)?, class: all(1)? },
            ModelOutput::Ssd(_) => ModelOutput::Ssd(SsdOutput { box_offsets: all(0)?, class_logits: all(1)? }),
        })
    }

    /// What kind of output this is, for errors.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ModelOutput::Logits(_) => "class logits",
            ModelOutput::Box(_) => "box",
            ModelOutput::Single { .. } => "single-object (box and class)",
            ModelOutput::Ssd(_) => "SSD",
        }
    }

    /// The lesson's one tensor: the logits or the box as they are; the single-object detector's
    /// `[B, 4 + C]` (box activations first, as its last `Linear` makes them); the SSD's
    /// `[B, A, C+1+4]` (class logits first).
    pub fn packed(&self) -> Tensor {
        match self {
            ModelOutput::Logits(t) | ModelOutput::Box(t) => t.shallow_clone(),
            ModelOutput::Single { bbox, class } => Tensor::cat(&[bbox, class], 1),
            ModelOutput::Ssd(o) => o.pack(),
        }
    }

    /// The single-object detector's output from the lesson's one tensor `[B, 4 + C]` (views).
    pub fn single_from_packed(t: &Tensor) -> Self {
        let c = t.size()[1] - 4;
        ModelOutput::Single { bbox: t.narrow(1, 0, 4), class: t.narrow(1, 4, c) }
    }

    /// The class logits (`Logits`), else an error naming `what` needed them.
    pub fn logits(&self, what: &str) -> Result<&Tensor> {
        match self {
            ModelOutput::Logits(t) => Ok(t),
            o => Err(self.wrong(what, "class logits", o)),
        }
    }

    /// The SSD's output, else an error naming `what` needed it.
    pub fn ssd(&self, what: &str) -> Result<&SsdOutput> {
        match self {
            ModelOutput::Ssd(o) => Ok(o),
            o => Err(self.wrong(what, "an SSD output", o)),
        }
    }

    fn wrong(&self, what: &str, want: &str, o: &ModelOutput) -> Error {
        Error::Invalid(format!("{what} needs {want}, the model's output is {}", o.kind_name()))
    }
}
