//! A checkpoint that knows what its model is. Every checkpoint fastdet writes
//! ([`crate::learner::Learner::save`], the `last/` folder, `fastdet train`'s stages) holds the
//! weights and a [`ModelSpec`] (what the model predicts, its classes, input size, backbone, head
//! with an SSD's anchors, loss), one safetensors file. [`super::Model::load`] rebuilds the model
//! from the file alone, without the data it was trained on, and
//! [`super::Model::predict_image`] runs it on one picture (`fastdet predict --model FILE --image a.jpg`).
//!
//! The spec is stored as one more tensor of the file, [`SPEC_KEY`], of type `u8`: the spec's
//! JSON. Python reads it with `safetensors.torch.load_file(f)["__fastdet_model__"].numpy().tobytes()`.

use super::loss::Loss;
use super::net::HeadKind;
use super::resnet::Arch;
use crate::data::TargetKind;
use crate::error::{Error, Result};
use crate::transforms::CropType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// The name of the spec's tensor in a checkpoint.
pub const SPEC_KEY: &str = "__fastdet_model__";

/// The version of [`ModelSpec`]'s JSON this crate writes and reads.
pub const SPEC_VERSION: u32 = 1;

/// What a model is: enough to build it again, and to read its outputs, without its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub version: u32,
    /// What it predicts (and so how its output reads).
    pub target: TargetKind,
    /// Class names, in the order of the model's class outputs.
    pub classes: Vec<String>,
    /// Input size: images are `sz x sz`.
    pub sz: u32,
    /// How an image becomes `sz x sz` at prediction (the validation transforms' crop).
    pub crop: CropType,
    pub arch: Arch,
    /// The head; for an SSD with its config (anchors, matching, class loss).
    pub head: HeadKind,
    pub loss: Loss,
}

impl ModelSpec {
    /// A model of `target`s with `head` and `loss` on a backbone `arch`, for `sz x sz` images
    /// squashed to that size (`CropType::No`, the lessons' validation transforms).
    pub fn new(target: TargetKind, classes: Vec<String>, sz: u32, arch: Arch, head: HeadKind, loss: Loss) -> Self {
        Self { version: SPEC_VERSION, target, classes, sz, crop: CropType::No, arch, head, loss }
    }

    /// The spec as the `u8` tensor stored in a checkpoint.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Invalid(format!("model spec: {e}")))?;
        Ok(Tensor::from_slice(&json))
    }

    /// The spec stored in a checkpoint's tensors, if there is one (`path` names the file in errors).
    pub fn from_tensors(file: &HashMap<String, Tensor>, path: &Path) -> Result<Option<Self>> {
        let Some(t) = file.get(SPEC_KEY) else { return Ok(None) };
        let bytes = Vec::<u8>::try_from(t.to_kind(Kind::Uint8).reshape([-1]))?;
        let spec: ModelSpec = serde_json::from_slice(&bytes)
            .map_err(|e| Error::checkpoint(path, format!("its model description does not read: {e}")))?;
        if spec.version != SPEC_VERSION {
            return Err(Error::checkpoint(
                path,
                format!("its model description is version {}, this fastdet reads {SPEC_VERSION}", spec.version),
            ));
        }
        Ok(Some(spec))
    }

    /// One line: what the model is.
    pub fn describe(&self) -> String {
        let what = match self.target {
            TargetKind::BoxClass => "single-object detector (box and class of the largest object)",
            TargetKind::LargestClass => "classifier of the largest object",
            TargetKind::LargestBox => "box regressor of the largest object",
            TargetKind::MultiLabel => "multi-label classifier",
            TargetKind::AllBoxes => "SSD detector",
        };
        format!("{what}, {} on {}x{} images, {} classes", self.arch.name(), self.sz, self.sz, self.classes.len())
    }
}

/// Write the variables of `vs` and `spec` to `path` (safetensors).
pub fn write(path: &Path, vs: &nn::VarStore, spec: &ModelSpec) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.push((SPEC_KEY.to_string(), spec.to_tensor()?));
    Tensor::write_safetensors(&named, path).map_err(|e| Error::checkpoint(path, format!("cannot save weights: {e}")))
}

/// Every tensor of a checkpoint file.
pub fn read(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::Io {
            path: path.into(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "checkpoint not found"),
        });
    }
    Ok(Tensor::read_safetensors(path)
        .map_err(|e| Error::checkpoint(path, format!("not a checkpoint (corrupt, or not safetensors): {e}")))?
        .into_iter()
        .collect())
}
