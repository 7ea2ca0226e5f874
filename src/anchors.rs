//! Anchor boxes of lesson 9 (`pascal-multi.ipynb`): a config in, anchors out; and the way back
//! from the head's activations to boxes ([`actn_to_bb`], [`decode`]).
//!
//! Everything here is in units of the image (0..1), **(y, x)** order: centres `(y, x)`, sizes
//! `(h, w)`, corners `(y1, x1, y2, x2)` — the order of [`crate::boxes::BBox`] divided by `sz`.
//!
//! The order of the anchors is the lesson's, which the head's [`crate::model::ssd::flatten_conv`] must
//! match: for each grid (4x4 first), for each cell in row-major order (the row, y, varies
//! slowest), for each of the `k` shapes in the order
//! `[(zoom*i, zoom*j) for zoom in zooms for (i, j) in ratios]`. The lesson calls the first
//! coordinate `anc_x` and makes it with `np.repeat` (slowest): it is the row, y, since the boxes
//! are `(top, left, bottom, right)`.
//!
//! Whether the anchors fit a dataset's boxes, and anchors fitted to them, are in [`coverage`] and
//! [`fit`].
//!
//! ```no_run
//! use fastdet::anchors::{AnchorConfig, Anchors};
//! let anchors = Anchors::new(&AnchorConfig::lesson_189(), tch::Device::Cpu);
//! assert_eq!(anchors.len(), 189);
//! ```

pub mod coverage;
pub mod fit;

pub use coverage::{unit_boxes, Coverage, CoverageTable, UnitBox, MATCH_IOU};
pub use fit::{fit_anchors, AnchorFit, FitOpts};

use crate::boxes::{corners_to_bboxes, hw2corners, BBox};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Grids, zooms and aspect ratios of the anchors (lesson 9's `anc_grids`, `anc_zooms`,
/// `anc_ratios`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorConfig {
    /// Cells per side of each grid, largest first (`[4, 2, 1]`).
    pub grids: Vec<usize>,
    /// Scales of an anchor relative to its cell (`[0.7, 1.0, 1.3]`).
    pub zooms: Vec<f32>,
    /// `(height, width)` factors (`[(1, 1), (1, 0.5), (0.5, 1)]`).
    pub ratios: Vec<(f32, f32)>,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self::lesson_189()
    }
}

impl AnchorConfig {
    /// The first SSD of lesson 9: a 4x4 grid, one square anchor of side 1/4 per cell (`k = 1`).
    pub fn lesson_4x4() -> Self {
        Self { grids: vec![4], zooms: vec![1.0], ratios: vec![(1.0, 1.0)] }
    }

    /// The final SSD of lesson 9: grids 4, 2, 1, zooms 0.7, 1, 1.3 (the video says 0.75), ratios
    /// 1:1, 1:0.5, 0.5:1 -> `k = 9`, `(16 + 4 + 1) * 9 = 189` anchors.
    pub fn lesson_189() -> Self {
        Self { grids: vec![4, 2, 1], zooms: vec![0.7, 1.0, 1.3], ratios: vec![(1.0, 1.0), (1.0, 0.5), (0.5, 1.0)] }
    }

    /// Anchor shapes per cell: `zooms.len() * ratios.len()`.
    pub fn k(&self) -> usize {
        self.zooms.len() * self.ratios.len()
    }

    /// Number of anchors: `sum(g * g) * k`.
    pub fn len(&self) -> usize {
        self.grids.iter().map(|g| g * g).sum::<usize>() * self.k()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lesson's `anchor_scales`: `[(zoom*i, zoom*j) for zoom in zooms for (i, j) in ratios]`,
    /// `(h, w)` relative to a cell.
    pub fn scales(&self) -> Vec<(f64, f64)> {
        self.zooms
            .iter()
            .flat_map(|&z| self.ratios.iter().map(move |&(i, j)| (z as f64 * i as f64, z as f64 * j as f64)))
            .collect()
    }

    /// Every anchor in f64, in the lesson's order (grid, then cell row-major, then shape): the
    /// centres at `np.linspace(1/(2g), 1 - 1/(2g), g)` per axis, the sizes `scale / g`. What
    /// [`Anchors::new`] puts in tensors and [`coverage::anchor_corners`] turns into host corners.
    pub fn geometry(&self) -> Vec<AnchorGeometry> {
        let scales = self.scales();
        let mut out = Vec::with_capacity(self.len());
        for &g in &self.grids {
            let off = 1.0 / (g as f64 * 2.0);
            let step = if g > 1 { (1.0 - 2.0 * off) / (g as f64 - 1.0) } else { 0.0 };
            let lin = |i: usize| if g > 1 && i == g - 1 { 1.0 - off } else { off + i as f64 * step };
            for row in 0..g {
                for col in 0..g {
                    for &(h, w) in &scales {
                        let (g, cy, cx) = (g as f64, lin(row), lin(col));
                        out.push(AnchorGeometry { cy, cx, h: h / g, w: w / g, cell: 1.0 / g });
                    }
                }
            }
        }
        out
    }
}

/// One anchor before rounding to f32 ([`AnchorConfig::geometry`]): centre `(cy, cx)`, size
/// `(h, w)` and the side of its grid cell, all relative to the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorGeometry {
    pub cy: f64,
    pub cx: f64,
    pub h: f64,
    pub w: f64,
    pub cell: f64,
}

/// Anchors as tensors on one device, each `[A, n]`, in the lesson's order (see the module docs).
#[derive(Debug)]
pub struct Anchors {
    /// `[A, 2]` centres `(y, x)`.
    pub centers: Tensor,
    /// `[A, 2]` sizes `(h, w)`.
    pub sizes: Tensor,
    /// `[A, 1]` the side of the anchor's grid cell, `1 / grid` (the lesson's `grid_sizes`).
    pub grid_sizes: Tensor,
    /// `[A, 4]` corners `(y1, x1, y2, x2)` (the lesson's `anchor_cnr`).
    pub corners: Tensor,
    /// The config they were made from.
    pub config: AnchorConfig,
}

impl Clone for Anchors {
    fn clone(&self) -> Self {
        Self {
            centers: self.centers.shallow_clone(),
            sizes: self.sizes.shallow_clone(),
            grid_sizes: self.grid_sizes.shallow_clone(),
            corners: self.corners.shallow_clone(),
            config: self.config.clone(),
        }
    }
}

impl Anchors {
    /// The anchors of `cfg` on `device` (float32). Computed in f64 as numpy does, then rounded.
    pub fn new(cfg: &AnchorConfig, device: Device) -> Self {
        let geo = cfg.geometry();
        let ctr: Vec<f64> = geo.iter().flat_map(|a| [a.cy, a.cx]).collect();
        let hw: Vec<f64> = geo.iter().flat_map(|a| [a.h, a.w]).collect();
        let gs: Vec<f64> = geo.iter().map(|a| a.cell).collect();
        let t = |v: &[f64], n: i64| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Tensor::from_slice(&v).view([-1, n]).to_device(device)
        };
        let (centers, sizes, grid_sizes) = (t(&ctr, 2), t(&hw, 2), t(&gs, 1));
        let corners = hw2corners(&centers, &sizes);
        Self { centers, sizes, grid_sizes, corners, config: cfg.clone() }
    }

    /// Number of anchors `A`.
    pub fn len(&self) -> usize {
        self.centers.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        self.centers.device()
    }

    pub fn to_device(&self, device: Device) -> Self {
        Self {
            centers: self.centers.to_device(device),
            sizes: self.sizes.to_device(device),
            grid_sizes: self.grid_sizes.to_device(device),
            corners: self.corners.to_device(device),
            config: self.config.clone(),
        }
    }

    /// The corners as pixel boxes of an `sz x sz` image (`corners * sz`, as the lesson draws them).
    pub fn to_bboxes(&self, sz: f32) -> Result<Vec<BBox>> {
        corners_to_bboxes(&self.corners, sz)
    }

    /// The anchors at `idx` (`[P]` int64) only.
    pub fn index_select(&self, idx: &Tensor) -> Anchors {
        Anchors {
            centers: self.centers.index_select(0, idx),
            sizes: self.sizes.index_select(0, idx),
            grid_sizes: self.grid_sizes.index_select(0, idx),
            corners: self.corners.index_select(0, idx),
            config: self.config.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// From activations to boxes

/// Lesson 9's `actn_to_bb`: activations `[A, 4]` (or a batch's `[B, A, 4]`) -> corners of the
/// same shape. With `t = tanh(actn)`,
/// centre = `t[:2]/2 * grid_size + anchor_centre` (at most half a cell away), size =
/// `(t[2:]/2 + 1) * anchor_size` (0.5x to 1.5x the anchor).
pub fn actn_to_bb(actn: &Tensor, anchors: &Anchors) -> Tensor {
    let t = actn.tanh(); // [.., A, 4]
    let ctr = t.narrow(-1, 0, 2) / 2.0 * &anchors.grid_sizes + &anchors.centers; // [.., A, 2]
    let hw = (t.narrow(-1, 2, 2) / 2.0 + 1.0) * &anchors.sizes; // [.., A, 2]
    hw2corners(&ctr, &hw)
}

/// One image's predictions, decoded: every anchor's box and class probabilities.
#[derive(Debug)]
pub struct Decoded {
    /// `[A, 4]` corners `(y1, x1, y2, x2)` in 0..1 ([`actn_to_bb`]).
    pub boxes: Tensor,
    /// `[A, C+1]` `sigmoid` of the class logits (background last), as the lesson plots them.
    pub probs: Tensor,
}

impl Decoded {
    /// The boxes in pixels of an `sz x sz` image.
    pub fn bboxes(&self, sz: f32) -> Result<Vec<BBox>> {
        corners_to_bboxes(&self.boxes, sz)
    }

    /// Each anchor's most likely class over all `C + 1` columns and its probability (the
    /// lesson's `plot_results`: `b_clas.max(1)`, background included).
    pub fn best(&self) -> Result<(Vec<usize>, Vec<f32>)> {
        let (p, c) = self.probs.to_device(Device::Cpu).to_kind(Kind::Float).max_dim(1, false);
        let p: Vec<f32> = Vec::try_from(p)?;
        let c: Vec<i64> = Vec::try_from(c)?;
        Ok((c.into_iter().map(|c| c as usize).collect(), p))
    }
}
