//! A checkpoint that knows what its model is. Every checkpoint fastdet writes
//! ([`crate::learner::Learner::save`], the `last/` folder, `fastdet train`'s stages) holds the
//! weights and a [`ModelSpec`] (what the model predicts, its classes, input size, backbone, head
//! with an SSD's anchors, loss), one safetensors file. [`Model::load`] rebuilds the model from
//! the file alone, without the data it was trained on, and [`Model::predict_image`] runs it on
//! one picture (`fastdet predict --model FILE --image a.jpg`).
//!
//! The spec is stored as one more tensor of the file, [`SPEC_KEY`], of type `u8`: the spec's
//! JSON. Python reads it with `safetensors.torch.load_file(f)["__fastdet_model__"].numpy().tobytes()`.

use crate::anchors::{actn_to_bb, Anchors};
use crate::boxes::BBox;
use crate::data::TargetKind;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::ssd::SsdOutput;
use crate::model::{Arch, ConvModel, HeadKind, N_GROUPS};
use crate::nms::{nms_detections, NmfOpts};
use crate::transforms::{scaled_size, tfms_from_model, CropType, TfmY};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

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

/// A trained model on its own: its spec, its weights, the network.
pub struct Model {
    pub spec: ModelSpec,
    pub vs: nn::VarStore,
    pub net: ConvModel,
}

/// What a model says about one image, boxes in the image's own pixels.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// The largest object's class (softmax probability).
    Class { class: String, prob: f32 },
    /// The largest object's box.
    Box { bbox: BBox },
    /// The largest object's class and box.
    ClassBox { class: String, prob: f32, bbox: BBox },
    /// Every class whose sigmoid probability is over the threshold, most likely first.
    Labels(Vec<(String, f32)>),
    /// The SSD's detections after the lesson's NMS, best first.
    Objects(Vec<(String, f32, BBox)>),
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bb = |b: &BBox| {
            format!("box (top, left, bottom, right) {:.0} {:.0} {:.0} {:.0}", b.top, b.left, b.bottom, b.right)
        };
        match self {
            Prediction::Class { class, prob } => write!(f, "{class} ({prob:.3})"),
            Prediction::Box { bbox } => write!(f, "{}", bb(bbox)),
            Prediction::ClassBox { class, prob, bbox } => write!(f, "{class} ({prob:.3}), {}", bb(bbox)),
            Prediction::Labels(l) if l.is_empty() => write!(f, "no class over the threshold"),
            Prediction::Labels(l) => {
                write!(f, "{}", l.iter().map(|(c, p)| format!("{c} ({p:.3})")).collect::<Vec<_>>().join(", "))
            }
            Prediction::Objects(o) if o.is_empty() => write!(f, "no detection over the threshold"),
            Prediction::Objects(o) => {
                for (k, (c, p, b)) in o.iter().enumerate() {
                    if k > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{c} ({p:.3}), {}", bb(b))?;
                }
                Ok(())
            }
        }
    }
}

impl Model {
    /// The model of a checkpoint, on the default device (CUDA if there is one).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(path, crate::device::default_device())
    }

    /// The model of a checkpoint on `device`. A checkpoint written before checkpoints held their
    /// spec is an error that says how to load it (into a learner built as it was).
    pub fn load_on(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = path.as_ref();
        let file = read(path)?;
        let spec = ModelSpec::from_tensors(&file, path)?.ok_or_else(|| {
            Error::checkpoint(
                path,
                "it holds weights only, no description of its model (written by an older fastdet): \
                 build the learner it came from and call learn.load(..)",
            )
        })?;
        let mut vs = nn::VarStore::new(device);
        let net = ConvModel::new(&vs, spec.arch, spec.head.clone(), spec.sz as i64);
        crate::model::copy_all_converting(&mut vs, &file, path)?;
        Ok(Self { spec, vs, net })
    }

    /// The raw output for normalised images `x` `[B, 3, sz, sz]` (evaluation mode).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.net.forward(&x.to_device(self.vs.device()), false, N_GROUPS))
    }

    /// What the model says about `img`. `opts`: the SSD's post-processing (the lesson's
    /// `show_nmf`), and for a multi-label model the probability threshold (`opts.thresh`).
    pub fn predict_image(&self, img: &RgbImage, opts: NmfOpts) -> Result<Prediction> {
        let s = &self.spec;
        let (_, val) = tfms_from_model(s.sz, vec![], s.crop, TfmY::Coord)?;
        let aug = val.apply(img, &[], 0)?;
        let x = Tensor::from_slice(&aug.image).reshape([1, 3, s.sz as i64, s.sz as i64]);
        let out = self.forward(&x).to_kind(Kind::Float).to_device(Device::Cpu);
        let (w, h) = img.dimensions();
        let back = |b: BBox| to_original(b, s.crop, s.sz, (w, h));
        let class = |k: usize| s.classes.get(k).cloned().unwrap_or_else(|| format!("class {k}"));
        Ok(match s.target {
            TargetKind::LargestClass => {
                let p = Vec::<f32>::try_from(out.get(0).softmax(0, Kind::Float))?;
                let (k, prob) = best(&p);
                Prediction::Class { class: class(k), prob }
            }
            TargetKind::LargestBox => Prediction::Box { bbox: back(row_box(&Vec::<f32>::try_from(out.get(0))?)) },
            TargetKind::BoxClass => {
                let row = out.get(0);
                let bb = Vec::<f32>::try_from(row.narrow(0, 0, 4).sigmoid() * s.sz as f64)?;
                let p = Vec::<f32>::try_from(row.narrow(0, 4, row.size()[0] - 4).softmax(0, Kind::Float))?;
                let (k, prob) = best(&p);
                Prediction::ClassBox { class: class(k), prob, bbox: back(row_box(&bb)) }
            }
            TargetKind::MultiLabel => {
                let p = Vec::<f32>::try_from(out.get(0).sigmoid())?;
                let mut l: Vec<(String, f32)> =
                    p.iter().enumerate().filter(|(_, &q)| q > opts.thresh).map(|(k, &q)| (class(k), q)).collect();
                l.sort_by(|a, b| b.1.total_cmp(&a.1));
                Prediction::Labels(l)
            }
            TargetKind::AllBoxes => {
                let HeadKind::Ssd(cfg) = &s.head else {
                    return Err(Error::Invalid(format!(
                        "a model of all boxes needs an SSD head, this one has {:?}",
                        s.head
                    )));
                };
                let packed = SsdOutput::unpack(&out, cfg.n_classes)?;
                let anchors = Anchors::new(&cfg.anchors, Device::Cpu);
                let (clas, offsets) = packed.image(0);
                let found = nms_detections(&actn_to_bb(&offsets, &anchors), &clas, s.sz as f32, opts)?;
                let mut o: Vec<(String, f32, BBox)> =
                    found.into_iter().map(|d| (class(d.class), d.score, back(d.bbox))).collect();
                o.sort_by(|a, b| b.1.total_cmp(&a.1));
                Prediction::Objects(o)
            }
        })
    }

    /// [`Model::predict_image`] of an image file.
    pub fn predict_file(&self, path: impl AsRef<Path>, opts: NmfOpts) -> Result<Prediction> {
        self.predict_image(&crate::data::open_image(path)?, opts)
    }
}

/// The index and value of the largest entry.
fn best(p: &[f32]) -> (usize, f32) {
    p.iter().copied().enumerate().fold((0, f32::NEG_INFINITY), |b, (k, v)| if v > b.1 { (k, v) } else { b })
}

/// A box from an output row `[top, left, bottom, right]` (pixels of the model's input).
fn row_box(r: &[f32]) -> BBox {
    BBox::new(r[0], r[1], r[2], r[3])
}

/// A box in pixels of the model's `sz x sz` input back in the pixels of a `w x h` image that the
/// validation transforms (crop `crop`) turned into that input.
pub fn to_original(b: BBox, crop: CropType, sz: u32, (w, h): (u32, u32)) -> BBox {
    let szf = sz as f32;
    match crop {
        CropType::No => b.scale(h as f32 / szf, w as f32 / szf),
        CropType::Center | CropType::Random => {
            // The short side scaled to sz, then the centre square (fastai's center_crop).
            let (ws, hs) = scaled_size(w, h, sz).unwrap_or((sz, sz));
            let (ox, oy) = (((ws as f32 - szf) / 2.0).ceil().max(0.0), ((hs as f32 - szf) / 2.0).ceil().max(0.0));
            let moved = BBox::new(b.top + oy, b.left + ox, b.bottom + oy, b.right + ox);
            moved.scale(h as f32 / hs as f32, w as f32 / ws as f32)
        }
    }
}
