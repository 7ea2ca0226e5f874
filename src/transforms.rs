//! Augmentation with boxes that follow the image (fastai 0.7 `transforms.py`; lesson 9's opening,
//! `tfm_y=TfmType.COORD`).
//!
//! The pipeline is the lesson's `tfms_from_model(f_model, sz, aug_tfms, crop_type, tfm_y)`:
//! 1. scale so the short side is `sz` (area interpolation; deterministic, so it can be cached:
//!    [`scale_to`]);
//! 2. each augmentation in order ([`Aug`]: flip, rotate, lighting);
//! 3. the crop ([`CropType`]: squash to `sz x sz`, centre or random square crop);
//! 4. normalisation with ImageNet statistics, HWC to CHW.
//!
//! **How it is computed.** Steps 2-3 are all affine maps of the plane, so they are composed into
//! one map and each output pixel is sampled once (bilinear, reflecting at the border as OpenCV's
//! `BORDER_REFLECT`), with lighting and normalisation applied on the same buffer. Geometrically
//! this is what a step-by-step pipeline computes, without the intermediate images and their
//! repeated interpolation. Two small differences from fastai 0.7: lighting is applied once, last,
//! with `m` the mean of the output image (fastai takes the mean at the step's place in the list);
//! rotation is about the geometric centre `(w/2, h/2)`, half a pixel from OpenCV's pixel-centre
//! `(c//2, r//2)`.
//!
//! **Boxes** ([`TfmY::Coord`]) move as points: the 4 corners of each box go through the same
//! map, their bounding box is clipped to the output image, and a box left less than one pixel
//! wide or high is dropped (its index is absent from [`Augmented::kept`], so labels stay
//! aligned). [`TfmY::None`] leaves the boxes where they were: the lesson's deliberate bug.
//!
//! **Coordinates.** Continuous pixel-edge coordinates: pixel `(row r, col c)` covers
//! `[c, c+1) x [r, r+1)`. An inclusive [`BBox`] covers `[left, right+1) x [top, bottom+1)`.
//!
//! **Randomness.** Every random choice comes from a seeded [`ChaCha8Rng`]: [`Tfms::plan`] draws
//! the parameters, [`Tfms::apply_plan`] applies them, so a [`Plan`] can also be written by hand
//! (tests and benchmarks use fixed flips and angles).

use crate::boxes::BBox;
use crate::error::{Error, Result};
use fast_image_resize as fr;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// ImageNet statistics, as fastai's `imagenet_stats` (on 0..1 floats).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Left-right flip with probability `p` (fastai `RandomFlip`, default `p = 0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFlip {
    #[serde(default = "flip_p")]
    pub p: f32,
}

fn flip_p() -> f32 {
    RandomFlip::default().p
}

fn rotate_p() -> f32 {
    RandomRotate::new(0.0).p
}

impl Default for RandomFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

/// Rotation about the image centre by an angle uniform in `[-deg, deg]` degrees, with
/// probability `p` (fastai `RandomRotate`, default `p = 0.75`). Positive angles turn the image
/// counter-clockwise, as OpenCV's `getRotationMatrix2D`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomRotate {
    pub deg: f32,
    #[serde(default = "rotate_p")]
    pub p: f32,
}

impl RandomRotate {
    pub fn new(deg: f32) -> Self {
        Self { deg, p: 0.75 }
    }
}

/// Brightness and contrast (fastai `RandomLighting(b, c)`): `b' ~ U(-b, b)`, `c' ~ U(-c, c)`,
/// contrast factor `c'' = -1/(c'-1)` if `c' < 0` else `c'+1`, then
/// `x = clip((x - m) * c'' + m + b', 0, 1)` with `m` the mean of the whole image. Never moves
/// boxes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomLighting {
    pub b: f32,
    pub c: f32,
}

/// One augmentation of the pipeline, applied in order. In JSON (`fastdet train` configs):
/// `{"type": "flip", "p": 0.5}`, `{"type": "rotate", "deg": 3, "p": 0.5}`,
/// `{"type": "lighting", "b": 0.05, "c": 0.05}` (`p` may be left out: fastai's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Aug {
    Flip(RandomFlip),
    Rotate(RandomRotate),
    Lighting(RandomLighting),
}

impl From<RandomFlip> for Aug {
    fn from(t: RandomFlip) -> Self {
        Aug::Flip(t)
    }
}
impl From<RandomRotate> for Aug {
    fn from(t: RandomRotate) -> Self {
        Aug::Rotate(t)
    }
}
impl From<RandomLighting> for Aug {
    fn from(t: RandomLighting) -> Self {
        Aug::Lighting(t)
    }
}

/// The lesson's augmentations for boxes (lesson 8, single-object detection, and lesson 9):
/// `RandomFlip()`, `RandomRotate(3, p=0.5)`, `RandomLighting(0.05, 0.05)`.
pub fn lesson_augmentations() -> Vec<Aug> {
    vec![
        RandomFlip::default().into(),
        RandomRotate { deg: 3.0, p: 0.5 }.into(),
        RandomLighting { b: 0.05, c: 0.05 }.into(),
    ]
}

/// fastai's `transforms_side_on` (the lesson's classifiers): `RandomRotate(10)`,
/// `RandomLighting(0.05, 0.05)`, `RandomFlip()`.
pub fn transforms_side_on() -> Vec<Aug> {
    vec![RandomRotate::new(10.0).into(), RandomLighting { b: 0.05, c: 0.05 }.into(), RandomFlip::default().into()]
}

/// The last geometric step (fastai `CropType`; `"no"`, `"center"`, `"random"` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropType {
    /// Squash the whole image to `sz x sz`, no crop (`CropType.NO`, the lesson's choice for boxes).
    No,
    /// The centre square.
    Center,
    /// A random square (the training default in fastai).
    Random,
}

/// What happens to the boxes (fastai `TfmType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TfmY {
    /// Boxes stay as they were given (the lesson's bug demonstration).
    None,
    /// Boxes go through every geometric step with the image.
    Coord,
}

/// A full pipeline: output size, augmentations, crop, what happens to boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tfms {
    pub sz: u32,
    pub augs: Vec<Aug>,
    pub crop: CropType,
    pub tfm_y: TfmY,
}

/// The lesson's `tfms_from_model(f_model, sz, aug_tfms, crop_type, tfm_y)`: the training
/// pipeline and the validation one (the same without augmentations; a random crop becomes the
/// centre crop, as in fastai).
pub fn tfms_from_model(sz: u32, aug_tfms: Vec<Aug>, crop_type: CropType, tfm_y: TfmY) -> Result<(Tfms, Tfms)> {
    let trn = Tfms::new(sz, aug_tfms, crop_type, tfm_y)?;
    let val_crop = if crop_type == CropType::Random { CropType::Center } else { crop_type };
    let val = Tfms::new(sz, vec![], val_crop, tfm_y)?;
    Ok((trn, val))
}

/// The parameters drawn for one sample: what [`Tfms::apply_plan`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The geometric and photometric steps in order.
    pub steps: Vec<Step>,
    /// Top-left corner of the square crop in the scaled image (ignored for `CropType::No`).
    pub crop_offset: (f32, f32),
}

/// One drawn augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Flip,
    /// Degrees, counter-clockwise.
    Rotate(f32),
    /// Brightness shift `b'` and contrast factor `c''`.
    Lighting {
        b: f32,
        c: f32,
    },
}

/// One augmented sample.
#[derive(Debug, Clone)]
pub struct Augmented {
    /// Normalised CHW floats, `[3, sz, sz]`.
    pub image: Vec<f32>,
    pub sz: u32,
    /// The boxes after the transform, in output pixels (or unchanged with `TfmY::None`).
    pub boxes: Vec<BBox>,
    /// For each output box, the index of the input box it came from.
    pub kept: Vec<usize>,
}

impl Augmented {
    /// Back to a displayable image (the lesson's `denorm`).
    pub fn to_rgb(&self) -> RgbImage {
        denorm_chw(&self.image, self.sz)
    }
}

/// A 2-D affine map `p -> A p + t`, as `[a, b, tx, c, d, ty]`: `x' = a x + b y + tx`,
/// `y' = c x + d y + ty`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [f64; 6]);

impl Affine {
    pub const IDENTITY: Affine = Affine([1., 0., 0., 0., 1., 0.]);

    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let [a, b, tx, c, d, ty] = self.0;
        (a * x + b * y + tx, c * x + d * y + ty)
    }

    /// `self` after `first`: `p -> self(first(p))`.
    pub fn after(&self, first: &Affine) -> Affine {
        let [a, b, tx, c, d, ty] = self.0;
        let [e, f, ux, g, h, uy] = first.0;
        Affine([a * e + b * g, a * f + b * h, a * ux + b * uy + tx, c * e + d * g, c * f + d * h, c * ux + d * uy + ty])
    }

    pub fn inverse(&self) -> Affine {
        let [a, b, tx, c, d, ty] = self.0;
        let det = a * d - b * c;
        let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);
        Affine([ia, ib, -(ia * tx + ib * ty), ic, id, -(ic * tx + id * ty)])
    }

    fn scale(sx: f64, sy: f64) -> Affine {
        Affine([sx, 0., 0., 0., sy, 0.])
    }

    fn translate(tx: f64, ty: f64) -> Affine {
        Affine([1., 0., tx, 0., 1., ty])
    }

    /// Left-right flip of a `width`-wide image: `x -> width - x`.
    fn flip(width: f64) -> Affine {
        Affine([-1., 0., width, 0., 1., 0.])
    }

    /// Counter-clockwise rotation by `deg` about `(cx, cy)` (y points down, as OpenCV).
    fn rotate(deg: f64, cx: f64, cy: f64) -> Affine {
        let (s, c) = deg.to_radians().sin_cos();
        // OpenCV getRotationMatrix2D: [[c, s], [-s, c]] about the centre.
        let r = Affine([c, s, 0., -s, c, 0.]);
        Affine::translate(cx, cy).after(&r).after(&Affine::translate(-cx, -cy))
    }
}

impl Tfms {
    /// A pipeline; a configuration that makes no sense is an error.
    pub fn new(sz: u32, augs: Vec<Aug>, crop: CropType, tfm_y: TfmY) -> Result<Self> {
        if sz == 0 {
            return Err(Error::Invalid("transforms: sz must be at least 1 pixel, got 0".into()));
        }
        for aug in &augs {
            let p = match aug {
                Aug::Flip(f) => f.p,
                Aug::Rotate(r) => {
                    if !(r.deg >= 0.0 && r.deg.is_finite()) {
                        return Err(Error::Invalid(format!(
                            "RandomRotate: deg must be a finite angle >= 0, got {}",
                            r.deg
                        )));
                    }
                    r.p
                }
                Aug::Lighting(l) => {
                    if !(l.b >= 0.0 && l.b.is_finite() && l.c >= 0.0 && l.c.is_finite()) {
                        return Err(Error::Invalid(format!(
                            "RandomLighting: b and c must be finite and >= 0, got b = {}, c = {}",
                            l.b, l.c
                        )));
                    }
                    1.0
                }
            };
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::Invalid(format!("{aug:?}: probability p must be in [0, 1], got {p}")));
            }
        }
        Ok(Self { sz, augs, crop, tfm_y })
    }

    /// Draw the parameters of one sample for a scaled image of `width x height`.
    pub fn plan(&self, rng: &mut impl Rng, width: u32, height: u32) -> Plan {
        let mut steps = vec![];
        for aug in &self.augs {
            match *aug {
                Aug::Flip(f) => {
                    if rng.random::<f32>() < f.p {
                        steps.push(Step::Flip);
                    }
                }
                Aug::Rotate(r) => {
                    if rng.random::<f32>() < r.p {
                        steps.push(Step::Rotate(rng.random_range(-r.deg..=r.deg)));
                    }
                }
                Aug::Lighting(l) => {
                    let b = rng.random_range(-l.b..=l.b);
                    let c = rng.random_range(-l.c..=l.c);
                    let c = if c < 0.0 { -1.0 / (c - 1.0) } else { c + 1.0 };
                    steps.push(Step::Lighting { b, c });
                }
            }
        }
        let (sz, w, h) = (self.sz as f32, width as f32, height as f32);
        let crop_offset = match self.crop {
            CropType::No => (0.0, 0.0),
            // fastai's center_crop: math.ceil((r - min_sz) / 2)
            CropType::Center => (((w - sz) / 2.0).ceil().max(0.0), ((h - sz) / 2.0).ceil().max(0.0)),
            CropType::Random => (
                rng.random_range(0..=(width.saturating_sub(self.sz))) as f32,
                rng.random_range(0..=(height.saturating_sub(self.sz))) as f32,
            ),
        };
        Plan { steps, crop_offset }
    }

    /// The map from the scaled image to the output image.
    pub fn forward_map(&self, plan: &Plan, width: u32, height: u32) -> Affine {
        let (w, h) = (width as f64, height as f64);
        let mut m = Affine::IDENTITY;
        for step in &plan.steps {
            m = match *step {
                Step::Flip => Affine::flip(w).after(&m),
                Step::Rotate(deg) => Affine::rotate(deg as f64, w / 2.0, h / 2.0).after(&m),
                Step::Lighting { .. } => m,
            };
        }
        let sz = self.sz as f64;
        let crop = match self.crop {
            CropType::No => Affine::scale(sz / w, sz / h),
            CropType::Center | CropType::Random => {
                Affine::translate(-plan.crop_offset.0 as f64, -plan.crop_offset.1 as f64)
            }
        };
        crop.after(&m)
    }

    /// Scale an image (and its boxes, with `TfmY::Coord`) and augment it with a plan drawn from
    /// `seed`. For a dataset, cache [`scale_to`]'s result and call [`Tfms::apply_plan`].
    pub fn apply(&self, img: &RgbImage, boxes: &[BBox], seed: u64) -> Result<Augmented> {
        let (scaled, sy, sx) = scale_to(img, self.sz)?;
        Ok(self.apply_scaled(&scaled, (sy, sx), boxes, seed))
    }

    /// [`Tfms::apply`] of an image already scaled by [`scale_to`] (or
    /// [`crate::data::decode_scaled`]) with its factors `(sy, sx)`; `boxes` in the original
    /// image's pixels.
    pub fn apply_scaled(&self, scaled: &RgbImage, (sy, sx): (f32, f32), boxes: &[BBox], seed: u64) -> Augmented {
        let (boxes, plan) = self.boxes_and_plan(scaled.dimensions(), (sy, sx), boxes, seed);
        self.apply_plan(scaled, &boxes, &plan)
    }

    /// The boxes (original pixels) scaled by `(sy, sx)` where they follow the image, and the
    /// plan drawn from `seed` for a scaled image of `size`.
    fn boxes_and_plan(&self, size: (u32, u32), (sy, sx): (f32, f32), boxes: &[BBox], seed: u64) -> (Vec<BBox>, Plan) {
        let boxes: Vec<BBox> = match self.tfm_y {
            TfmY::Coord => boxes.iter().map(|b| b.scale(sy, sx)).collect(),
            TfmY::None => boxes.to_vec(),
        };
        (boxes, self.plan(&mut ChaCha8Rng::seed_from_u64(seed), size.0, size.1))
    }

    /// Apply a plan to an already scaled image and boxes in its pixels.
    pub fn apply_plan(&self, scaled: &RgbImage, boxes: &[BBox], plan: &Plan) -> Augmented {
        let mut image = vec![0f32; 3 * (self.sz * self.sz) as usize];
        let (boxes, kept) = self.apply_plan_into(scaled, boxes, plan, &mut image);
        Augmented { image, sz: self.sz, boxes, kept }
    }

    /// [`Tfms::apply_plan`] writing the normalised CHW image into `out` (`3 * sz * sz` floats:
    /// one image's place in a batch, say); returns the moved boxes and the indices of those kept.
    pub fn apply_plan_into(
        &self,
        scaled: &RgbImage,
        boxes: &[BBox],
        plan: &Plan,
        out: &mut [f32],
    ) -> (Vec<BBox>, Vec<usize>) {
        self.warp_into(scaled, scaled.dimensions(), boxes, plan, out)
    }

    /// [`Tfms::apply`] of a [`ScaledImage`] (what the loader caches); `boxes` in the original
    /// image's pixels. The plan is drawn for, and the boxes scaled to, `scaled.size`, whatever
    /// the resolution of its pixels: the same sample as `apply` of the image at that size.
    pub fn apply_warp(&self, scaled: &ScaledImage, boxes: &[BBox], seed: u64) -> Augmented {
        let mut image = vec![0f32; 3 * (self.sz * self.sz) as usize];
        let (boxes, kept) = self.apply_warp_into(scaled, boxes, seed, &mut image);
        Augmented { image, sz: self.sz, boxes, kept }
    }

    /// [`Tfms::apply_warp`] writing the image into `out` (`3 * sz * sz` floats).
    pub fn apply_warp_into(
        &self,
        scaled: &ScaledImage,
        boxes: &[BBox],
        seed: u64,
        out: &mut [f32],
    ) -> (Vec<BBox>, Vec<usize>) {
        let (boxes, plan) = self.boxes_and_plan(scaled.size, (scaled.sy, scaled.sx), boxes, seed);
        self.warp_into(&scaled.pixels, scaled.size, &boxes, &plan, out)
    }

    /// The plan applied to an image of `size` whose pixels are `pixels` (that size, or another
    /// resolution of the same picture: the map to the output is composed with the change of
    /// resolution, so the image is sampled once).
    fn warp_into(
        &self,
        pixels: &RgbImage,
        size: (u32, u32),
        boxes: &[BBox],
        plan: &Plan,
        out: &mut [f32],
    ) -> (Vec<BBox>, Vec<usize>) {
        let (w, h) = size;
        let fwd = self.forward_map(plan, w, h);
        let (pw, ph) = pixels.dimensions();
        let inv = if (pw, ph) == size {
            fwd.inverse()
        } else {
            Affine::scale(pw as f64 / w as f64, ph as f64 / h as f64).after(&fwd.inverse())
        };
        let image = out;
        let sum = warp_chw(pixels, &inv, self.sz, image);
        let lighting: Vec<(f32, f32)> = plan
            .steps
            .iter()
            .filter_map(|s| if let Step::Lighting { b, c } = *s { Some((b, c)) } else { None })
            .collect();
        match lighting[..] {
            // The usual case, fused: the mean comes from the warp's sum.
            [] => light_and_normalize(image, None),
            [(b, c)] => {
                let m = (sum / image.len().max(1) as f64) as f32;
                light_and_normalize(image, Some((m, b, c)));
            }
            _ => {
                for (b, c) in lighting {
                    apply_lighting(image, b, c);
                }
                light_and_normalize(image, None);
            }
        }
        match self.tfm_y {
            TfmY::None => (boxes.to_vec(), (0..boxes.len()).collect()),
            TfmY::Coord => move_boxes(boxes, &fwd, self.sz),
        }
    }
}

/// Move boxes through `fwd` as 4 corners each; clip to `sz x sz`; drop what is left under a pixel.
pub fn move_boxes(boxes: &[BBox], fwd: &Affine, sz: u32) -> (Vec<BBox>, Vec<usize>) {
    let lim = sz as f64;
    let mut out = vec![];
    let mut kept = vec![];
    for (i, b) in boxes.iter().enumerate() {
        let (l, t, r, btm) = (b.left as f64, b.top as f64, b.right as f64 + 1.0, b.bottom as f64 + 1.0);
        let pts = [fwd.apply(l, t), fwd.apply(r, t), fwd.apply(l, btm), fwd.apply(r, btm)];
        let x0 = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min).clamp(0.0, lim);
        let x1 = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max).clamp(0.0, lim);
        let y0 = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).clamp(0.0, lim);
        let y1 = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).clamp(0.0, lim);
        if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
            continue;
        }
        out.push(BBox::new(y0 as f32, x0 as f32, (y1 - 1.0) as f32, (x1 - 1.0) as f32));
        kept.push(i);
    }
    (out, kept)
}

/// Step 1: resize so the short side is `sz` (area averaging when shrinking, bilinear when
/// growing). Returns the image and the factors `(sy, sx)` that map its pixels.
pub fn scale_to(img: &RgbImage, sz: u32) -> Result<(RgbImage, f32, f32)> {
    scale_reduced(img, img.dimensions(), sz)
}

/// The size [`scale_to`] gives a `w x h` image: short side `sz`, the other rounded.
pub fn scaled_size(w: u32, h: u32, sz: u32) -> Result<(u32, u32)> {
    if w == 0 || h == 0 || sz == 0 {
        return Err(Error::Invalid(format!("cannot scale a {w}x{h} image to a short side of {sz}")));
    }
    let short = w.min(h) as f64;
    Ok((((w as f64 * sz as f64 / short).round() as u32).max(1), ((h as f64 * sz as f64 / short).round() as u32).max(1)))
}

/// [`scale_to`] of a `full` = `(w, h)` image given already reduced (`img`: a JPEG decoded at a
/// reduced DCT scale, say): the same output size, and factors that map the full image's pixels.
pub fn scale_reduced(img: &RgbImage, full: (u32, u32), sz: u32) -> Result<(RgbImage, f32, f32)> {
    let (w, h) = full;
    let (nw, nh) = scaled_size(w, h, sz)?;
    // (Halving by 2x2 averages first was measured slower than fast_image_resize's SIMD area
    // resize in one go: 0.42 against 0.29 ms for a 640x480 photo.)
    let out = resize(img, nw, nh)?;
    Ok((out, nh as f32 / h as f32, nw as f32 / w as f32))
}

/// An image standing for its [`scale_to`] version: `size` is the scaled size (short side
/// `sz`) that plans and boxes refer to, `(sy, sx)` map the original image's pixels to it, and
/// `pixels` hold it at that size or, when a decoder gave something a little larger (a JPEG at a
/// reduced DCT scale: 320x240 for 299x224), at that resolution: the warp then samples them
/// through the composed map, which saves the area resize. [`ScaledImage::new`] decides.
#[derive(Debug, Clone)]
pub struct ScaledImage {
    pub pixels: RgbImage,
    pub size: (u32, u32),
    pub sy: f32,
    pub sx: f32,
}

impl ScaledImage {
    /// Largest area of `pixels`, relative to the scaled size, kept as it is: then the warp
    /// shrinks by at most ~1.22x per side with bilinear sampling, where aliasing is negligible
    /// (and a cache of these images holds at most half as much again).
    pub const MAX_AREA: f64 = 1.5;

    /// `img` (any size; the image of `full` = `(w, h)` pixels, possibly reduced) for a short
    /// side of `sz`: kept as it is when its area is at most [`ScaledImage::MAX_AREA`] times
    /// the scaled size's, else area-resized to that size.
    pub fn new(img: RgbImage, full: (u32, u32), sz: u32) -> Result<Self> {
        let (w, h) = full;
        let (nw, nh) = scaled_size(w, h, sz)?;
        let (sy, sx) = (nh as f32 / h as f32, nw as f32 / w as f32);
        let area = img.width() as f64 * img.height() as f64;
        let pixels = if area <= Self::MAX_AREA * nw as f64 * nh as f64 { img } else { resize(&img, nw, nh)? };
        Ok(Self { pixels, size: (nw, nh), sy, sx })
    }

    /// The image at its scaled size (an area resize when `pixels` are larger).
    pub fn to_scaled(&self) -> Result<RgbImage> {
        resize(&self.pixels, self.size.0, self.size.1)
    }
}

/// Resize with fast_image_resize: box filter (area) when shrinking, bilinear when growing.
pub fn resize(img: &RgbImage, nw: u32, nh: u32) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if (nw, nh) == (w, h) {
        return Ok(img.clone());
    }
    let src = fr::images::ImageRef::new(w, h, img.as_raw(), fr::PixelType::U8x3)
        .map_err(|e| Error::Invalid(format!("resize: {e}")))?;
    let mut dst = fr::images::Image::new(nw, nh, fr::PixelType::U8x3);
    let filter = if nw < w && nh < h { fr::FilterType::Box } else { fr::FilterType::Bilinear };
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(filter));
    fr::Resizer::new().resize(&src, &mut dst, &opts).map_err(|e| Error::Invalid(format!("resize: {e}")))?;
    RgbImage::from_raw(nw, nh, dst.into_vec()).ok_or_else(|| Error::Invalid("resize: buffer size".into()))
}

/// OpenCV `BORDER_REFLECT` (`fedcba|abcdefgh|hgfedcba`) for an index into `0..n`.
#[inline]
fn reflect(i: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * n;
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - 1 - i;
    }
    i as usize
}

/// `x.floor()` as an integer without a libm call (baseline x86-64 has no SSE4.1 `roundsd`).
#[inline(always)]
fn floor_i64(x: f64) -> i64 {
    let i = x as i64;
    if (i as f64) > x {
        i - 1
    } else {
        i
    }
}

/// Sample `src` at every output pixel centre through `inv` (output -> source), bilinear with a
/// reflected border. Output: CHW floats in 0..1, and their sum (for lighting's mean).
///
/// Output pixels go 8 at a time ([`warp_with`]). A map without rotation (squash, flip) is
/// separable: each output column reads the same two source columns with the same weight on
/// every row, so those are computed once per column and once per row; a rotation steps every
/// pixel's source position along the row.
///
/// On an x86-64 CPU with AVX2 (chosen at run time) the 8 pixels' positions, weights and blend
/// are vector instructions and their 32 source pixels are gathered ([`avx2::warp`]); chunks at
/// the image's border, where the source reflects, take the portable path. Both compute the same
/// operations in the same order, so the result is the same to the bit.
fn warp_chw(src: &RgbImage, inv: &Affine, sz: u32, out: &mut [f32]) -> f64 {
    assert_eq!(out.len(), 3 * (sz * sz) as usize, "warp: the output holds 3 x {sz} x {sz} floats");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && avx2::fits(src) {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::warp(src, inv, sz, out) };
    }
    warp_portable(src, inv, sz, out)
}

/// Output pixels per chunk.
const LANES: usize = 8;

/// The R, G and B of a chunk of output pixels, each in 0..1.
type Rgb8 = [[f32; LANES]; 3];

const SCALE: f32 = 1.0 / 255.0;

/// The image sampled: its bytes and shape.
struct Source<'a> {
    raw: &'a [u8],
    w: i64,
    h: i64,
    stride: usize,
}

/// One output row of a separable map: its two source rows' byte offsets and their weights.
struct AxisRow {
    ra: usize,
    rb: usize,
    wt: f32,
    wb: f32,
}

/// A position along an output row of a general map, in 16.16 fixed point (the integer part is
/// the tap, the rest its weight), and its step per output pixel.
#[derive(Clone, Copy)]
struct Steps {
    qx: i64,
    qy: i64,
    dqx: i64,
    dqy: i64,
}

impl Steps {
    /// Row `v`'s first pixel centre in source pixel-centre indices; it moves by (a, c) per
    /// column (no float-to-integer conversion per pixel; the drift over a row stays under 0.002 px).
    fn row(inv: &Affine, v: usize) -> Steps {
        let [a, b, tx, c, d, ty] = inv.0;
        let yc = v as f64 + 0.5;
        let sx0 = (a * 0.5 + b * yc + tx - 0.5) as f32;
        let sy0 = (c * 0.5 + d * yc + ty - 0.5) as f32;
        const ONE: f64 = 65536.0;
        let (qx, qy) = ((sx0 as f64 * ONE).round() as i64, (sy0 as f64 * ONE).round() as i64);
        let (dqx, dqy) = (((a as f32) as f64 * ONE).round() as i64, ((c as f32) as f64 * ONE).round() as i64);
        Steps { qx, qy, dqx, dqy }
    }

    /// `u` pixels further along the row.
    fn at(self, u: usize) -> Steps {
        Steps { qx: self.qx + u as i64 * self.dqx, qy: self.qy + u as i64 * self.dqy, ..self }
    }
}

/// The RGB bytes at `off` as one little-endian word (a fourth byte from the next pixel, or 0 at
/// the very end of the image).
#[inline(always)]
fn load_rgb(raw: &[u8], off: usize) -> u32 {
    match raw.get(off..off + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], 0]),
    }
}

impl Source<'_> {
    fn new(src: &RgbImage) -> Source<'_> {
        Source { raw: src.as_raw(), w: src.width() as i64, h: src.height() as i64, stride: 3 * src.width() as usize }
    }

    /// Bilinear blend of `n` output pixels: `offs[j][k]` is the byte offset of source pixel `j`
    /// (top-left, top-right, bottom-left, bottom-right) of output pixel `k`, `wts[j][k]` its
    /// weight (0..1/255). Lanes past `n` have all weights 0 and give 0.
    #[inline(always)]
    fn blend(&self, offs: &[[usize; LANES]; 4], wts: &[[f32; LANES]; 4]) -> Rgb8 {
        let mut px = [[0u32; LANES]; 4];
        for j in 0..4 {
            for k in 0..LANES {
                px[j][k] = load_rgb(self.raw, offs[j][k]);
            }
        }
        let mut out = [[0f32; LANES]; 3];
        for (ch, plane) in out.iter_mut().enumerate() {
            let byte = |j: usize, k: usize| ((px[j][k] >> (8 * ch)) & 0xff) as f32;
            for k in 0..LANES {
                plane[k] =
                    byte(0, k) * wts[0][k] + byte(1, k) * wts[1][k] + byte(2, k) * wts[2][k] + byte(3, k) * wts[3][k];
            }
        }
        out
    }

    /// `n` pixels of a general map from `at`: interior pixels take their neighbours' offsets
    /// directly, border pixels reflect.
    #[inline(always)]
    fn general(&self, at: Steps, n: usize) -> Rgb8 {
        let (w, h, stride) = (self.w, self.h, self.stride);
        let (mut offs, mut wts) = ([[0usize; LANES]; 4], [[0f32; LANES]; 4]);
        for k in 0..n {
            let Steps { qx, qy, .. } = at.at(k);
            let (x0, y0) = (qx >> 16, qy >> 16);
            let (fx, fy) = ((qx & 0xffff) as f32 * (1.0 / 65536.0), (qy & 0xffff) as f32 * (1.0 / 65536.0));
            wts[0][k] = (1.0 - fx) * (1.0 - fy) * SCALE;
            wts[1][k] = fx * (1.0 - fy) * SCALE;
            wts[2][k] = (1.0 - fx) * fy * SCALE;
            wts[3][k] = fx * fy * SCALE;
            let (xa, xb, ra, rb) = if x0 >= 0 && x0 < w - 1 && y0 >= 0 && y0 < h - 1 {
                let (xa, ra) = (x0 as usize * 3, y0 as usize * stride);
                (xa, xa + 3, ra, ra + stride)
            } else {
                (reflect(x0, w) * 3, reflect(x0 + 1, w) * 3, reflect(y0, h) * stride, reflect(y0 + 1, h) * stride)
            };
            offs[0][k] = ra + xa;
            offs[1][k] = ra + xb;
            offs[2][k] = rb + xa;
            offs[3][k] = rb + xb;
        }
        self.blend(&offs, &wts)
    }

    /// The pixels of a separable map's `row` at the columns `cols` (at most 8).
    #[inline(always)]
    fn axis(&self, row: &AxisRow, cols: &[(usize, usize, f32)]) -> Rgb8 {
        let (mut offs, mut wts) = ([[0usize; LANES]; 4], [[0f32; LANES]; 4]);
        for (k, &(xa, xb, fx)) in cols.iter().enumerate() {
            offs[0][k] = row.ra + xa;
            offs[1][k] = row.ra + xb;
            offs[2][k] = row.rb + xa;
            offs[3][k] = row.rb + xb;
            wts[0][k] = (1.0 - fx) * row.wt;
            wts[1][k] = fx * row.wt;
            wts[2][k] = (1.0 - fx) * row.wb;
            wts[3][k] = fx * row.wb;
        }
        self.blend(&offs, &wts)
    }
}

/// One axis of a separable bilinear sample: for each output index, the byte offsets (times
/// `step`) of the two source samples and the second one's weight, reflected at the border.
fn axis_taps(scale: f64, shift: f64, n_out: u32, n_src: u32, step: usize) -> Vec<(usize, usize, f32)> {
    (0..n_out)
        .map(|o| {
            let s = scale * (o as f64 + 0.5) + shift - 0.5;
            let i0 = floor_i64(s);
            let f = (s - i0 as f64) as f32;
            (reflect(i0, n_src as i64) * step, reflect(i0 + 1, n_src as i64) * step, f)
        })
        .collect()
}

/// The column taps of a map without rotation ([`axis_taps`]); none for a rotation.
fn column_taps(src: &RgbImage, inv: &Affine, sz: u32) -> Vec<(usize, usize, f32)> {
    let [a, b, tx, c, ..] = inv.0;
    if b == 0.0 && c == 0.0 {
        axis_taps(a, tx, sz, src.width(), 3)
    } else {
        vec![]
    }
}

/// The warp's loop over rows and chunks of 8 output pixels, `general(source, start, n)` or
/// `axis(source, row, u, chunk)` computing each chunk (`chunk`: the chunk's taps among `cols`,
/// the [`column_taps`] of `inv`, from column `u`).
#[inline(always)]
fn warp_with(
    src: &RgbImage,
    inv: &Affine,
    sz: u32,
    out: &mut [f32],
    cols: &[(usize, usize, f32)],
    general: impl Fn(&Source, Steps, usize) -> Rgb8,
    axis: impl Fn(&Source, &AxisRow, usize, &[(usize, usize, f32)]) -> Rgb8,
) -> f64 {
    let source = Source::new(src);
    let [_, b, _, c, d, ty] = inv.0;
    let separable = b == 0.0 && c == 0.0;
    let rows = if separable { axis_taps(d, ty, sz, src.height(), source.stride) } else { vec![] };
    let (n, szu) = ((sz * sz) as usize, sz as usize);
    let (plane_r, rest) = out.split_at_mut(n);
    let (plane_g, plane_b) = rest.split_at_mut(n);
    let mut total = 0f64;
    for v in 0..szu {
        let mut acc = [0f32; LANES];
        let row = v * szu..(v + 1) * szu;
        let (out_r, out_g, out_b) = (&mut plane_r[row.clone()], &mut plane_g[row.clone()], &mut plane_b[row]);
        let axis_row = rows.get(v).map(|&(ra, rb, fy)| AxisRow { ra, rb, wt: (1.0 - fy) * SCALE, wb: fy * SCALE });
        let start = if separable { None } else { Some(Steps::row(inv, v)) };
        for u in (0..szu).step_by(LANES) {
            let n = LANES.min(szu - u);
            let rgb = match (&axis_row, start) {
                (Some(r), _) => axis(&source, r, u, &cols[u..u + n]),
                (None, Some(start)) => general(&source, start.at(u), n),
                (None, None) => unreachable!("a separable map has a tap for every output row"),
            };
            for (plane, vals) in [&mut *out_r, &mut *out_g, &mut *out_b].into_iter().zip(&rgb) {
                plane[u..u + n].copy_from_slice(&vals[..n]);
            }
            for k in 0..LANES {
                acc[k] += rgb[0][k] + rgb[1][k] + rgb[2][k];
            }
        }
        total += acc.iter().sum::<f32>() as f64;
    }
    total
}

/// [`warp_chw`] on any CPU.
fn warp_portable(src: &RgbImage, inv: &Affine, sz: u32, out: &mut [f32]) -> f64 {
    warp_with(
        src,
        inv,
        sz,
        out,
        &column_taps(src, inv, sz),
        |s, at, n| s.general(at, n),
        |s, row, _, chunk| s.axis(row, chunk),
    )
}

/// [`warp_chw`] with AVX2 intrinsics: 8 pixels' positions and weights in lanes, their 4 x 8
/// source pixels gathered as 32-bit words (RGB and one byte of the next pixel), the channels
/// split by shifts and masks, and blended in the same order as [`Source::blend`].
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{warp_with, Affine, AxisRow, Rgb8, Source, Steps, LANES, SCALE};
    use image::RgbImage;
    use std::arch::x86_64::*;

    /// Byte offsets fit the gathers' 32-bit indices.
    pub(super) fn fits(src: &RgbImage) -> bool {
        src.as_raw().len() < i32::MAX as usize / 2
    }

    /// # Safety
    /// The CPU must have AVX2, and `fits(src)`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn warp(src: &RgbImage, inv: &Affine, sz: u32, out: &mut [f32]) -> f64 {
        // The column taps also as lanes: offsets and weights.
        let cols = super::column_taps(src, inv, sz);
        let col_xa: Vec<i32> = cols.iter().map(|c| c.0 as i32).collect();
        let col_xb: Vec<i32> = cols.iter().map(|c| c.1 as i32).collect();
        let col_fx: Vec<f32> = cols.iter().map(|c| c.2).collect();
        let len = src.as_raw().len();
        warp_with(
            src,
            inv,
            sz,
            out,
            &cols,
            // SAFETY (both): AVX2 is enabled here; every gathered word lies inside the image
            // (checked per chunk; the others go the portable way).
            |s, at, n| unsafe { general(s, at, n) }.unwrap_or_else(|| s.general(at, n)),
            |s, row, u, chunk| {
                let reach = row.ra.max(row.rb) + chunk.iter().map(|c| c.0.max(c.1)).max().unwrap_or(0) + 4;
                if chunk.len() == LANES && reach <= len {
                    unsafe { axis(s, row, &col_xa[u..u + LANES], &col_xb[u..u + LANES], &col_fx[u..u + LANES]) }
                } else {
                    s.axis(row, chunk)
                }
            },
        )
    }

    /// 8 pixels of a general map, or `None` when one of them is at the border (or `n < 8`).
    #[target_feature(enable = "avx2")]
    unsafe fn general(s: &Source, at: Steps, n: usize) -> Option<Rgb8> {
        let last = at.at(LANES - 1);
        let in_i32 = |q: i64| q >= i32::MIN as i64 && q <= i32::MAX as i64;
        if n < LANES || ![at.qx, at.qy, last.qx, last.qy].into_iter().all(in_i32) {
            return None;
        }
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let qx = _mm256_add_epi32(
            _mm256_set1_epi32(at.qx as i32),
            _mm256_mullo_epi32(lane, _mm256_set1_epi32(at.dqx as i32)),
        );
        let qy = _mm256_add_epi32(
            _mm256_set1_epi32(at.qy as i32),
            _mm256_mullo_epi32(lane, _mm256_set1_epi32(at.dqy as i32)),
        );
        let (x0, y0) = (_mm256_srai_epi32::<16>(qx), _mm256_srai_epi32::<16>(qy));
        // Interior: 0 <= x0 < w - 2 (so the 4-byte word at the right neighbour stays in its
        // row) and 0 <= y0 < h - 1.
        let minus1 = _mm256_set1_epi32(-1);
        let inside = _mm256_and_si256(
            _mm256_and_si256(_mm256_cmpgt_epi32(x0, minus1), _mm256_cmpgt_epi32(_mm256_set1_epi32(s.w as i32 - 2), x0)),
            _mm256_and_si256(_mm256_cmpgt_epi32(y0, minus1), _mm256_cmpgt_epi32(_mm256_set1_epi32(s.h as i32 - 1), y0)),
        );
        if _mm256_movemask_epi8(inside) != -1 {
            return None;
        }
        let frac = _mm256_set1_epi32(0xffff);
        let to_unit = _mm256_set1_ps(1.0 / 65536.0);
        let fx = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(qx, frac)), to_unit);
        let fy = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(qy, frac)), to_unit);
        let (one, scale) = (_mm256_set1_ps(1.0), _mm256_set1_ps(SCALE));
        let (gx, gy) = (_mm256_sub_ps(one, fx), _mm256_sub_ps(one, fy));
        let wts = [
            _mm256_mul_ps(_mm256_mul_ps(gx, gy), scale),
            _mm256_mul_ps(_mm256_mul_ps(fx, gy), scale),
            _mm256_mul_ps(_mm256_mul_ps(gx, fy), scale),
            _mm256_mul_ps(_mm256_mul_ps(fx, fy), scale),
        ];
        let stride = _mm256_set1_epi32(s.stride as i32);
        let tl = _mm256_add_epi32(_mm256_mullo_epi32(y0, stride), _mm256_mullo_epi32(x0, _mm256_set1_epi32(3)));
        let bl = _mm256_add_epi32(tl, stride);
        let right = _mm256_set1_epi32(3);
        Some(blend(s.raw, [tl, _mm256_add_epi32(tl, right), bl, _mm256_add_epi32(bl, right)], wts))
    }

    /// 8 pixels of a separable map's row from the columns' taps.
    #[target_feature(enable = "avx2")]
    unsafe fn axis(s: &Source, row: &AxisRow, xa: &[i32], xb: &[i32], fx: &[f32]) -> Rgb8 {
        let (xa, xb) = (_mm256_loadu_si256(xa.as_ptr().cast()), _mm256_loadu_si256(xb.as_ptr().cast()));
        let fx = _mm256_loadu_ps(fx.as_ptr());
        let gx = _mm256_sub_ps(_mm256_set1_ps(1.0), fx);
        let (wt, wb) = (_mm256_set1_ps(row.wt), _mm256_set1_ps(row.wb));
        let wts = [_mm256_mul_ps(gx, wt), _mm256_mul_ps(fx, wt), _mm256_mul_ps(gx, wb), _mm256_mul_ps(fx, wb)];
        let (ra, rb) = (_mm256_set1_epi32(row.ra as i32), _mm256_set1_epi32(row.rb as i32));
        let offs =
            [_mm256_add_epi32(ra, xa), _mm256_add_epi32(ra, xb), _mm256_add_epi32(rb, xa), _mm256_add_epi32(rb, xb)];
        blend(s.raw, offs, wts)
    }

    /// [`Source::blend`] in lanes: each offset's 4 bytes must lie inside `raw`.
    #[target_feature(enable = "avx2")]
    unsafe fn blend(raw: &[u8], offs: [__m256i; 4], wts: [__m256; 4]) -> Rgb8 {
        let base = raw.as_ptr().cast::<i32>();
        let px = offs.map(|o| _mm256_i32gather_epi32::<1>(base, o));
        let byte = _mm256_set1_epi32(0xff);
        let channel = |v: __m256i, ch: usize| {
            let shifted = match ch {
                0 => v,
                1 => _mm256_srli_epi32::<8>(v),
                _ => _mm256_srli_epi32::<16>(v),
            };
            _mm256_cvtepi32_ps(_mm256_and_si256(shifted, byte))
        };
        let mut out = [[0f32; LANES]; 3];
        for (ch, plane) in out.iter_mut().enumerate() {
            let mut sum = _mm256_mul_ps(channel(px[0], ch), wts[0]);
            for j in 1..4 {
                sum = _mm256_add_ps(sum, _mm256_mul_ps(channel(px[j], ch), wts[j]));
            }
            _mm256_storeu_ps(plane.as_mut_ptr(), sum);
        }
        out
    }
}

/// Lighting (if any) and ImageNet normalisation in one pass per channel:
/// `((clip(x * c + m * (1 - c) + b, 0, 1)) - mean) / std`.
fn light_and_normalize(image: &mut [f32], lighting: Option<(f32, f32, f32)>) {
    let n = image.len() / 3;
    for (ch, plane) in image.chunks_mut(n).enumerate() {
        let (mean, inv_std) = (IMAGENET_MEAN[ch], 1.0 / IMAGENET_STD[ch]);
        match lighting {
            Some((m, b, c)) => {
                let shift = m * (1.0 - c) + b;
                plane.iter_mut().for_each(|x| *x = ((*x * c + shift).clamp(0.0, 1.0) - mean) * inv_std);
            }
            None => plane.iter_mut().for_each(|x| *x = (*x - mean) * inv_std),
        }
    }
}

/// fastai's `lighting(im, b, c)` on 0..1 floats: `clip((x - m) * c + m + b, 0, 1)`.
pub fn apply_lighting(image: &mut [f32], b: f32, c: f32) {
    if b == 0.0 && c == 1.0 {
        return;
    }
    let m = (image.iter().map(|&x| x as f64).sum::<f64>() / image.len().max(1) as f64) as f32;
    for x in image.iter_mut() {
        *x = ((*x - m) * c + m + b).clamp(0.0, 1.0);
    }
}

/// The lesson's `denorm`: normalised CHW floats of a `sz x sz` image back to RGB bytes.
pub fn denorm_chw(image: &[f32], sz: u32) -> RgbImage {
    let n = (sz * sz) as usize;
    RgbImage::from_fn(sz, sz, |x, y| {
        let o = (y * sz + x) as usize;
        let px = |ch: usize| {
            ((image[ch * n + o] * IMAGENET_STD[ch] + IMAGENET_MEAN[ch]) * 255.0).round().clamp(0.0, 255.0) as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// `denorm` of a batch tensor `[B, 3, sz, sz]` (any device): one RGB image per sample.
pub fn denorm(batch: &tch::Tensor) -> Result<Vec<RgbImage>> {
    let size = batch.size();
    if size.len() != 4 || size[1] != 3 || size[2] != size[3] {
        return Err(Error::Shape { what: "denorm".into(), expected: "[B, 3, sz, sz]".into(), found: size });
    }
    let sz = size[2] as u32;
    let flat: Vec<f32> = Vec::try_from(batch.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).flatten(0, -1))?;
    let per = (3 * sz * sz) as usize;
    Ok(flat.chunks(per).map(|c| denorm_chw(c, sz)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_inverse_and_composition() {
        let m = Affine::rotate(30.0, 10.0, 5.0).after(&Affine::flip(20.0)).after(&Affine::scale(2.0, 0.5));
        let (x, y) = m.apply(3.0, 4.0);
        let (bx, by) = m.inverse().apply(x, y);
        assert!((bx - 3.0).abs() < 1e-9 && (by - 4.0).abs() < 1e-9);
    }

    #[test]
    fn rotation_is_counter_clockwise_on_screen() {
        // A point right of the centre moves up (smaller y) under a +90 degree rotation.
        let (x, y) = Affine::rotate(90.0, 0.0, 0.0).apply(1.0, 0.0);
        assert!(x.abs() < 1e-12 && (y + 1.0).abs() < 1e-12);
    }

    /// The 8-lane warp (tails of 5 and 1, borders, the image's last byte) against bilinear
    /// sampling written out in f64, pixel by pixel, for rotations, flips and scales.
    #[test]
    fn warp_matches_plain_bilinear_sampling() {
        let src = RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 5 + y * 3) as u8, (250 - 4 * y) as u8, (x * 2 + 40) as u8])
        });
        let (w, h) = (37i64, 23i64);
        let at =
            |x: i64, y: i64, ch: usize| src.get_pixel(reflect(x, w) as u32, reflect(y, h) as u32)[ch] as f64 / 255.0;
        for sz in [13u32, 16, 9] {
            for inv in [
                Affine::rotate(30.0, 18.0, 11.0).after(&Affine::scale(37.0 / sz as f64, 23.0 / sz as f64)),
                Affine::rotate(-3.0, 18.0, 11.0)
                    .after(&Affine::flip(sz as f64))
                    .after(&Affine::scale(40.0 / sz as f64, 26.0 / sz as f64)),
                Affine([37.0 / sz as f64, 0.0, 0.0, 0.0, 23.0 / sz as f64, 0.0]),
                Affine([-2.9, 0.0, 37.0, 0.0, 1.9, -1.0]),
            ] {
                let mut got = vec![0f32; (3 * sz * sz) as usize];
                let sum = warp_chw(&src, &inv, sz, &mut got);
                let (mut worst, mut want_sum) = (0f64, 0f64);
                for v in 0..sz as usize {
                    for u in 0..sz as usize {
                        let (sx, sy) = inv.apply(u as f64 + 0.5, v as f64 + 0.5);
                        let (sx, sy) = (sx - 0.5, sy - 0.5);
                        let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
                        let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
                        for ch in 0..3 {
                            let want = at(x0, y0, ch) * (1.0 - fx) * (1.0 - fy)
                                + at(x0 + 1, y0, ch) * fx * (1.0 - fy)
                                + at(x0, y0 + 1, ch) * (1.0 - fx) * fy
                                + at(x0 + 1, y0 + 1, ch) * fx * fy;
                            worst = worst.max((got[ch * (sz * sz) as usize + v * sz as usize + u] as f64 - want).abs());
                            want_sum += want;
                        }
                    }
                }
                // The per-pixel path steps in 1/65536 px (drift under 0.002 px a row); the
                // image changes by at most 5 levels a pixel.
                assert!(worst < 1e-4, "sz {sz}, map {:?}: {worst} from plain bilinear", inv.0);
                assert!((sum - want_sum).abs() < 1e-3 * want_sum, "sums {sum} vs {want_sum}");
            }
        }
    }

    /// The separable path (squash, flip) gives what the per-pixel path gives for the same map
    /// (a rotation term of 1e-300 sends it the per-pixel way).
    #[test]
    fn axis_aligned_warp_equals_the_general_one() {
        let src = RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * y % 251) as u8, (200 - x - y) as u8])
        });
        for (ax, tx, dy, ty) in
            [(37.0 / 16.0, 0.0, 23.0 / 16.0, 0.0), (-37.0 / 16.0, 37.0, 23.0 / 16.0, 0.0), (1.3, -2.5, 0.7, 3.25)]
        {
            let inv = Affine([ax, 0.0, tx, 0.0, dy, ty]);
            let (mut fast, mut slow) = (vec![0f32; 3 * 16 * 16], vec![0f32; 3 * 16 * 16]);
            let fast_sum = warp_chw(&src, &inv, 16, &mut fast);
            let slow_sum = warp_chw(&src, &Affine([ax, 1e-300, tx, 0.0, dy, ty]), 16, &mut slow);
            let diff = fast.iter().zip(&slow).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            // The general path steps in 1/65536 px: at most ~1e-4 of a level-per-pixel slope.
            assert!(diff < 1e-4, "map {:?}: max difference {diff}", inv.0);
            assert!((fast_sum - slow_sum).abs() < 1e-2, "sums {fast_sum} vs {slow_sum}");
        }
    }

    /// The AVX2 warp (where the CPU has it) gives the portable one's floats to the bit, on an
    /// image large enough for interior chunks and with every kind of border chunk.
    #[test]
    fn avx2_warp_equals_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let src = RgbImage::from_fn(61, 45, |x, y| {
                image::Rgb([(x * 7 + y * 3) as u8, (x * y % 251) as u8, (200 - x - y) as u8])
            });
            for sz in [32u32, 29] {
                let s = sz as f64;
                for inv in [
                    Affine::rotate(3.0, 30.0, 22.0).after(&Affine::scale(61.0 / s, 45.0 / s)),
                    Affine::rotate(-40.0, 30.0, 22.0).after(&Affine::flip(s)).after(&Affine::scale(70.0 / s, 50.0 / s)),
                    Affine([61.0 / s, 0.0, 0.0, 0.0, 45.0 / s, 0.0]),
                    Affine([-1.7, 0.0, 61.0, 0.0, 1.2, 2.0]),
                ] {
                    let (mut fast, mut plain) =
                        (vec![0f32; (3 * sz * sz) as usize], vec![0f32; (3 * sz * sz) as usize]);
                    let fast_sum = unsafe { avx2::warp(&src, &inv, sz, &mut fast) };
                    let plain_sum = warp_portable(&src, &inv, sz, &mut plain);
                    let differ = fast.iter().zip(&plain).filter(|(p, q)| p.to_bits() != q.to_bits()).count();
                    assert_eq!(differ, 0, "sz {sz}, map {:?}: {differ} floats differ", inv.0);
                    assert_eq!(fast_sum.to_bits(), plain_sum.to_bits());
                }
            }
        }
    }

    #[test]
    fn reflect_matches_opencv() {
        // fedcba|abcdefgh|hgfedcba for n = 8
        let got: Vec<usize> = (-3..11).map(|i| reflect(i, 8)).collect();
        assert_eq!(got, vec![2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 6, 5]);
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(Tfms::new(0, vec![], CropType::No, TfmY::Coord).is_err());
        assert!(Tfms::new(8, vec![RandomFlip { p: 1.5 }.into()], CropType::No, TfmY::Coord).is_err());
        assert!(Tfms::new(8, vec![RandomRotate { deg: -3.0, p: 0.5 }.into()], CropType::No, TfmY::Coord).is_err());
        assert!(Tfms::new(8, vec![RandomLighting { b: 0.05, c: -0.5 }.into()], CropType::No, TfmY::Coord).is_err());
        assert!(Tfms::new(8, vec![RandomFlip { p: f32::NAN }.into()], CropType::No, TfmY::Coord).is_err());
    }
}
