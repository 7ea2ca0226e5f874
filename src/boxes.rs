//! Boxes: one type, one convention, conversions only at the edges.
//!
//! A [`BBox`] holds pixel coordinates in the lesson's order **(top, left, bottom, right)** =
//! `(y1, x1, y2, x2)`, zero-based and **inclusive**: the box covering the single pixel at row 5,
//! column 7 is `BBox { top: 5, left: 7, bottom: 5, right: 7 }`. This is what the lesson's
//! `hw_bb` produces (lesson 8, `pascal.ipynb`), so every number printed here can be compared with
//! the original notebook.
//!
//! The formats met at the edges:
//! - COCO / the lesson's JSON: `[x, y, w, h]`, zero-based ([`BBox::from_xywh`] = `hw_bb`,
//!   [`BBox::to_xywh`] = `bb_hw`);
//! - VOC XML: `xmin, ymin, xmax, ymax`, **one-based**, inclusive ([`BBox::from_voc`],
//!   [`BBox::to_voc`]).
//!
//! Fields are `f32` so that augmented boxes can hold fractional coordinates; boxes read from
//! annotations are whole numbers and every conversion of whole numbers here is exact.
//!
//! Box arithmetic lives here and nowhere else, in the three conventions the lesson and its
//! references use:
//! - **the lesson's, no `+1`** ([`iou_matrix`], [`jaccard`], [`intersect`], [`box_sz`]): corners
//!   `(a1, b1, a2, b2)` with area `(a2-a1)*(b2-b1)`, in `f32` as PyTorch computes it (SSD
//!   matching, NMS);
//! - **VOC pixels, `+1`** ([`voc_iou`], [`BBox::pixel_iou`]): inclusive pixel boxes whose areas
//!   count both edges, in `f64` as `voc_eval.py` computes it (VOC mAP, the synthetic set);
//! - **COCO `[x, y, w, h]`** ([`coco_iou`]): `maskUtils.bbIou`, with crowd regions (COCO mAP).
//!
//! Units: pixel boxes are [`BBox`]; the SSD works in 0..1 units of the image ("unit corners",
//! `(y1, x1, y2, x2)`), converted with [`BBox::from_unit_corners`] and [`corners_to_bboxes`].

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use tch::{Device, Kind, Tensor};

/// A box in pixels, `(top, left, bottom, right)`, zero-based, inclusive. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub top: f32,
    pub left: f32,
    pub bottom: f32,
    pub right: f32,
}

impl BBox {
    pub const fn new(top: f32, left: f32, bottom: f32, right: f32) -> Self {
        Self { top, left, bottom, right }
    }

    /// The lesson's `hw_bb`: COCO `[x, y, w, h]` -> `[y, x, y+h-1, x+w-1]`.
    pub fn from_xywh([x, y, w, h]: [f32; 4]) -> Self {
        Self::new(y, x, y + h - 1.0, x + w - 1.0)
    }

    /// The lesson's `bb_hw`: back to COCO `[x, y, w, h]` (what drawing and COCO results use).
    pub fn to_xywh(&self) -> [f32; 4] {
        [self.left, self.top, self.width(), self.height()]
    }

    /// From VOC XML corners (one-based, inclusive).
    pub fn from_voc(xmin: f32, ymin: f32, xmax: f32, ymax: f32) -> Self {
        Self::new(ymin - 1.0, xmin - 1.0, ymax - 1.0, xmax - 1.0)
    }

    /// To VOC XML corners `[xmin, ymin, xmax, ymax]` (one-based, inclusive).
    pub fn to_voc(&self) -> [f32; 4] {
        [self.left + 1.0, self.top + 1.0, self.right + 1.0, self.bottom + 1.0]
    }

    /// `[top, left, bottom, right]`, the lesson's array layout (`bb.csv`, targets).
    pub fn to_array(&self) -> [f32; 4] {
        [self.top, self.left, self.bottom, self.right]
    }

    pub fn from_array([top, left, bottom, right]: [f32; 4]) -> Self {
        Self::new(top, left, bottom, right)
    }

    /// Width in pixels, counting both edges (`right - left + 1`).
    pub fn width(&self) -> f32 {
        self.right - self.left + 1.0
    }

    /// Height in pixels, counting both edges (`bottom - top + 1`).
    pub fn height(&self) -> f32 {
        self.bottom - self.top + 1.0
    }

    /// The lesson's size key for "largest object": `(y2 - y1) * (x2 - x1)`, without the `+1`
    /// (lesson 8: `np.product(x[0][-2:] - x[0][:2])`). Use [`BBox::pixel_area`] for the
    /// number of pixels covered.
    pub fn area(&self) -> f32 {
        (self.bottom - self.top) * (self.right - self.left)
    }

    /// The number of pixels covered, `width * height`; 0 for an empty box.
    pub fn pixel_area(&self) -> f32 {
        if self.is_empty() {
            0.0
        } else {
            self.width() * self.height()
        }
    }

    /// True when the box covers no pixel (width or height of zero or less).
    pub fn is_empty(&self) -> bool {
        self.width() <= 0.0 || self.height() <= 0.0
    }

    /// True when every corner lies on a pixel of a `width x height` image.
    pub fn is_inside(&self, width: u32, height: u32) -> bool {
        self.top >= 0.0 && self.left >= 0.0 && self.bottom <= height as f32 - 1.0 && self.right <= width as f32 - 1.0
    }

    /// The box scaled by `(sy, sx)` about the origin: what resizing an image by those factors
    /// does to pixel edges. Inclusive boxes scale their outer edges, so `bottom + 1` scales.
    pub fn scale(&self, sy: f32, sx: f32) -> Self {
        Self::new(self.top * sy, self.left * sx, (self.bottom + 1.0) * sy - 1.0, (self.right + 1.0) * sx - 1.0)
    }

    /// A box from unit corners `(y1, x1, y2, x2)` (0..1 units of an `sz x sz` image, as the SSD
    /// predicts them) to pixels: every corner times `sz`, no `+1` (as the lesson draws them).
    pub fn from_unit_corners([y1, x1, y2, x2]: [f32; 4], sz: f32) -> Self {
        Self::new(y1 * sz, x1 * sz, y2 * sz, x2 * sz)
    }

    /// IoU of two inclusive pixel boxes, `+1` areas, in `f64` ([`voc_iou`] on [`BBox::to_voc`]).
    pub fn pixel_iou(&self, other: &BBox) -> f64 {
        voc_iou(&self.to_voc().map(f64::from), &other.to_voc().map(f64::from))
    }
}

impl fmt::Display for BBox {
    /// Prints like the lesson's numpy arrays: `[96 155 269 350]` (top left bottom right).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.to_array();
        if v.iter().all(|c| c.fract() == 0.0) {
            write!(f, "[{} {} {} {}]", v[0], v[1], v[2], v[3])
        } else {
            write!(f, "[{:.1} {:.1} {:.1} {:.1}]", v[0], v[1], v[2], v[3])
        }
    }
}

/// The lesson's `hw_bb` on plain arrays: `[x, y, w, h]` -> `[y1, x1, y2, x2]`.
pub fn hw_bb(xywh: [f32; 4]) -> [f32; 4] {
    BBox::from_xywh(xywh).to_array()
}

/// The lesson's `bb_hw` on plain arrays: `[y1, x1, y2, x2]` -> `[x, y, w, h]`.
pub fn bb_hw(a: [f32; 4]) -> [f32; 4] {
    BBox::from_array(a).to_xywh()
}

// ------------------------------------------------------------------------------------------
// IoU, the lesson's convention (no `+1`)
// ------------------------------------------------------------------------------------------

/// An `n x m` matrix of `f32`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// The lesson's `jaccard` on [`BBox`]es: the IoU matrix `[a.len(), b.len()]` with corners
/// `(top, left, bottom, right)` and areas `(bottom-top)*(right-left)`, **no `+1`**;
/// computed as the lesson does: `inter / ((sz_a + sz_b) - inter)`. An empty union gives 0.
pub fn iou_matrix(a: &[BBox], b: &[BBox]) -> Matrix {
    let a: Vec<[f32; 4]> = a.iter().map(BBox::to_array).collect();
    let b: Vec<[f32; 4]> = b.iter().map(BBox::to_array).collect();
    iou_matrix_corners(&a, &b)
}

/// [`iou_matrix`] on plain corner arrays `[a1, b1, a2, b2]`.
pub fn iou_matrix_corners(a: &[[f32; 4]], b: &[[f32; 4]]) -> Matrix {
    let mut data = Vec::with_capacity(a.len() * b.len());
    for p in a {
        let sa = (p[2] - p[0]) * (p[3] - p[1]);
        for q in b {
            let w = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
            let h = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
            let inter = w * h;
            let sb = (q[2] - q[0]) * (q[3] - q[1]);
            let iou = inter / (sa + sb - inter);
            data.push(if iou.is_nan() { 0.0 } else { iou });
        }
    }
    Matrix { rows: a.len(), cols: b.len(), data }
}

/// The lesson's `intersect(box_a, box_b)`: `[N, 4] x [M, 4] -> [N, M]` intersection areas.
pub fn intersect(box_a: &Tensor, box_b: &Tensor) -> Tensor {
    let max_xy = box_a.unsqueeze(1).narrow(2, 2, 2).minimum(&box_b.unsqueeze(0).narrow(2, 2, 2));
    let min_xy = box_a.unsqueeze(1).narrow(2, 0, 2).maximum(&box_b.unsqueeze(0).narrow(2, 0, 2));
    let inter = (max_xy - min_xy).clamp_min(0.0);
    inter.select(2, 0) * inter.select(2, 1)
}

/// The lesson's `box_sz(b)`: `(b[:,2]-b[:,0]) * (b[:,3]-b[:,1])`.
pub fn box_sz(b: &Tensor) -> Tensor {
    (b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1))
}

/// The lesson's `jaccard(box_a, box_b)`: IoU `[N, M]` of corner boxes `(y1, x1, y2, x2)`, no
/// `+1`: `inter / (box_sz(a)[:, None] + box_sz(b)[None] - inter)`. Where the union is zero (two
/// empty boxes) the IoU is 0, not NaN.
pub fn jaccard(box_a: &Tensor, box_b: &Tensor) -> Tensor {
    let inter = intersect(box_a, box_b); // [N, M]
    let union = box_sz(box_a).unsqueeze(1) + box_sz(box_b).unsqueeze(0) - &inter; // [N, M]
    let safe = union.abs().gt(0.0);
    (&inter / union.where_scalarother(&safe, 1.0)).where_scalarother(&safe, 0.0)
}

/// The lesson's `hw2corners(ctr, hw) = cat([ctr - hw/2, ctr + hw/2], 1)`: centres `[A, 2]` and
/// sizes `[A, 2]` -> corners `[A, 4]` (any leading dimensions: `[B, A, 2]` -> `[B, A, 4]`).
pub fn hw2corners(ctr: &Tensor, hw: &Tensor) -> Tensor {
    let half = hw / 2.0;
    Tensor::cat(&[ctr - &half, ctr + &half], -1) // [.., A, 4]
}

/// `[N, 4]` unit corners -> pixel boxes of an `sz x sz` image ([`BBox::from_unit_corners`]).
pub fn corners_to_bboxes(corners: &Tensor, sz: f32) -> Result<Vec<BBox>> {
    Ok(tensor_corners(corners)?.into_iter().map(|c| BBox::from_unit_corners(c, sz)).collect())
}

/// A `[N, 4]` tensor (any device, any float kind) as corner arrays; an empty tensor gives none.
pub fn tensor_corners(boxes: &Tensor) -> Result<Vec<[f32; 4]>> {
    let size = boxes.size();
    if size.len() != 2 || size[1] != 4 {
        if boxes.numel() == 0 {
            return Ok(Vec::new());
        }
        return Err(Error::Shape { what: "boxes".into(), expected: "[N, 4]".into(), found: size });
    }
    let flat: Vec<f32> = Vec::try_from(boxes.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]))?;
    Ok(flat.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}

// ------------------------------------------------------------------------------------------
// IoU, VOC's pixel convention (`+1`) and COCO's
// ------------------------------------------------------------------------------------------

/// `voc_eval.py`'s overlap of two one-based inclusive corner boxes `[xmin, ymin, xmax, ymax]`,
/// operation by operation in `f64`: `iw = max(min(x2) - max(x1) + 1, 0)`, likewise `ih`, then
/// `inter / ((w_a + 1)(h_a + 1)... + ... - inter)` with `a` the first box (the detection).
#[inline]
pub fn voc_iou(bb: &[f64; 4], g: &[f64; 4]) -> f64 {
    let ixmin = g[0].max(bb[0]);
    let iymin = g[1].max(bb[1]);
    let ixmax = g[2].min(bb[2]);
    let iymax = g[3].min(bb[3]);
    let iw = (ixmax - ixmin + 1.0).max(0.0);
    let ih = (iymax - iymin + 1.0).max(0.0);
    let inters = iw * ih;
    let uni = (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0) + (g[2] - g[0] + 1.0) * (g[3] - g[1] + 1.0) - inters;
    inters / uni
}

/// `maskUtils.bbIou` (pycocotools) for one pair of `[x, y, w, h]` boxes, `d` the detection and
/// `g` the ground truth; for a crowd `g` the union is the detection's area.
#[inline]
pub fn coco_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let ga = g[2] * g[3];
    let da = d[2] * d[3];
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let u = if crowd { da } else { da + ga - i };
    i / u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hw_bb_matches_the_lesson() {
        // lesson 8: trn_anno[12] has bbox [155, 96, 196, 174] -> hw_bb -> [96, 155, 269, 350]
        assert_eq!(hw_bb([155., 96., 196., 174.]), [96., 155., 269., 350.]);
        assert_eq!(bb_hw([96., 155., 269., 350.]), [155., 96., 196., 174.]);
    }

    #[test]
    fn voc_corners_are_one_based() {
        // VOC <xmin>206 <ymin>32 <xmax>460 <ymax>355 covers columns 205..=459 zero-based.
        let b = BBox::from_voc(206., 32., 460., 355.);
        assert_eq!(b, BBox::new(31., 205., 354., 459.));
        assert_eq!(b.to_xywh(), [205., 31., 255., 324.]);
        assert_eq!(b.to_voc(), [206., 32., 460., 355.]);
    }

    #[test]
    fn single_pixel_box() {
        let b = BBox::new(5., 7., 5., 7.);
        assert_eq!((b.width(), b.height(), b.pixel_area(), b.area()), (1., 1., 1., 0.));
        assert!(!b.is_empty());
        assert!(BBox::from_xywh([7., 5., 0., 3.]).is_empty());
    }

    #[test]
    fn scaling_keeps_outer_edges() {
        // A box covering the whole 100x50 image covers the whole 200x200 image after resizing.
        let full = BBox::new(0., 0., 49., 99.);
        assert_eq!(full.scale(4., 2.), BBox::new(0., 0., 199., 199.));
    }

    #[test]
    fn display_like_numpy() {
        assert_eq!(BBox::new(96., 155., 269., 350.).to_string(), "[96 155 269 350]");
    }
}
