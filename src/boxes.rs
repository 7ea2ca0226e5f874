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

use serde::{Deserialize, Serialize};
use std::fmt;

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
        self.top >= 0.0
            && self.left >= 0.0
            && self.bottom <= height as f32 - 1.0
            && self.right <= width as f32 - 1.0
    }

    /// The box scaled by `(sy, sx)` about the origin: what resizing an image by those factors
    /// does to pixel edges. Inclusive boxes scale their outer edges, so `bottom + 1` scales.
    pub fn scale(&self, sy: f32, sx: f32) -> Self {
        Self::new(
            self.top * sy,
            self.left * sx,
            (self.bottom + 1.0) * sy - 1.0,
            (self.right + 1.0) * sx - 1.0,
        )
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
