//! One picture in, what the model says about it out, in the picture's own pixels
//! (`fastdet predict --model FILE --image a.jpg`).

use super::{Model, ModelOutput};
use crate::boxes::BBox;
use crate::data::TargetKind;
use crate::error::{Error, Result};
use crate::nms::NmfOpts;
use crate::transforms::{scaled_size, tfms_from_model, CropType, TfmY};
use image::RgbImage;
use std::path::Path;
use tch::{Device, Kind, Tensor};

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
    /// What the model says about `img`. `opts`: the SSD's post-processing (the lesson's
    /// `show_nmf`), and for a multi-label model the probability threshold (`opts.thresh`).
    pub fn predict_image(&self, img: &RgbImage, opts: NmfOpts) -> Result<Prediction> {
        let s = &self.spec;
        let (_, val) = tfms_from_model(s.sz, vec![], s.crop, TfmY::Coord)?;
        let aug = val.apply(img, &[], 0)?;
        let x = Tensor::from_slice(&aug.image).reshape([1, 3, s.sz as i64, s.sz as i64]);
        let out = self.predict(&x).float().to_device(Device::Cpu);
        let (w, h) = img.dimensions();
        let back = |b: BBox| to_original(b, s.crop, s.sz, (w, h));
        let class = |k: usize| s.classes.get(k).cloned().unwrap_or_else(|| format!("class {k}"));
        let first = |t: &Tensor| -> Result<Vec<f32>> { Ok(Vec::<f32>::try_from(t.get(0))?) };
        Ok(match (s.target, &out) {
            (TargetKind::LargestClass, ModelOutput::Logits(t)) => {
                let (k, prob) = best(&first(&t.softmax(1, Kind::Float))?);
                Prediction::Class { class: class(k), prob }
            }
            (TargetKind::LargestBox, ModelOutput::Box(t)) => Prediction::Box { bbox: back(row_box(&first(t)?)) },
            (TargetKind::BoxClass, ModelOutput::Single { bbox, class: logits }) => {
                let bb = first(&(bbox.sigmoid() * s.sz as f64))?;
                let (k, prob) = best(&first(&logits.softmax(1, Kind::Float))?);
                Prediction::ClassBox { class: class(k), prob, bbox: back(row_box(&bb)) }
            }
            (TargetKind::MultiLabel, ModelOutput::Logits(t)) => {
                let p = first(&t.sigmoid())?;
                let mut l: Vec<(String, f32)> =
                    p.iter().enumerate().filter(|(_, &q)| q > opts.thresh).map(|(k, &q)| (class(k), q)).collect();
                l.sort_by(|a, b| b.1.total_cmp(&a.1));
                Prediction::Labels(l)
            }
            (TargetKind::AllBoxes, ModelOutput::Ssd(_)) => {
                let found = self.detections(&out, opts, 1)?.pop().unwrap_or_default();
                let mut o: Vec<(String, f32, BBox)> =
                    found.into_iter().map(|d| (class(d.class), d.score, back(d.bbox))).collect();
                o.sort_by(|a, b| b.1.total_cmp(&a.1));
                Prediction::Objects(o)
            }
            (target, out) => {
                return Err(Error::Invalid(format!("a model of {target:?} targets made a {} output", out.kind_name())))
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
