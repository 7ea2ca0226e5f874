//! Do the anchors fit the boxes? (lesson 9's question, answered with numbers): every object's
//! best IoU with any anchor, the share whose best anchor is over the matching threshold (the
//! recall the matching can reach at best), the share of best matches each grid and each
//! zoom x ratio takes, and the objects no anchor covers ([`Coverage`]).
//!
//! Objects are those the SSD trains on ([`Dataset::annotations`]: not difficult), squashed to
//! `sz x sz` as the lesson's loader does (`CropType::No`) and divided by `sz`, in the order
//! `(y1, x1, y2, x2)`: the boxes [`crate::model::ssd_loss::count_lost`] and the loss match. IoU is the
//! lesson's `jaccard` ([`crate::boxes::iou_matrix_corners`]: no `+1`).

use super::AnchorConfig;
use crate::boxes::BBox;
use crate::data::Dataset;
use crate::error::{Error, Result};
use std::fmt;

/// The matching threshold coverage is measured at: an object whose best anchor overlaps it by
/// more than this gets a positive anchor on its own (lesson 9's `map_to_ground_truth` in the
/// testing cells; the loss uses [`crate::model::ssd::SsdConfig::pos_iou`]).
pub const MATCH_IOU: f64 = 0.5;

/// One object at training size: its image, its index among the image's objects (difficult ones
/// counted), and its corners `(y1, x1, y2, x2)` in 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitBox {
    pub image: usize,
    pub object: usize,
    pub corners: [f32; 4],
}

impl UnitBox {
    /// `(h, w)` in image units.
    pub fn shape(&self) -> (f64, f64) {
        let [y1, x1, y2, x2] = self.corners;
        ((y2 - y1) as f64, (x2 - x1) as f64)
    }
}

/// Every object the SSD trains on in `ds`, squashed to `sz x sz` and divided by `sz` (see the
/// module docs).
pub fn unit_boxes(ds: &Dataset, sz: u32) -> Result<Vec<UnitBox>> {
    if sz == 0 {
        return Err(Error::Invalid(format!("{}: anchor coverage at training size 0", ds.source.display())));
    }
    let s = sz as f32;
    let mut out = vec![];
    for (i, rec) in ds.images.iter().enumerate() {
        if rec.width == 0 || rec.height == 0 {
            return Err(Error::Annotation {
                path: ds.source.clone(),
                image: rec.file_name.clone(),
                problem: format!("an image of {}x{} pixels has no boxes to cover", rec.width, rec.height),
            });
        }
        let (sy, sx) = (s / rec.height as f32, s / rec.width as f32);
        for (j, o) in rec.objects.iter().enumerate().filter(|(_, o)| !o.difficult) {
            let b = o.bbox.scale(sy, sx);
            out.push(UnitBox { image: i, object: j, corners: b.to_array().map(|v| v / s) });
        }
    }
    Ok(out)
}

/// Where an anchor comes from: its grid (index into [`AnchorConfig::grids`]), its cell, and its
/// shape (index into [`AnchorConfig::scales`]: zoom-major, then ratio).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorOrigin {
    pub grid: usize,
    pub row: usize,
    pub col: usize,
    pub shape: usize,
}

/// Anchor `a` of `cfg`, in the order of [`super::Anchors`]: grid, then cell (row-major), then
/// shape. `None` past the last anchor.
pub fn anchor_origin(cfg: &AnchorConfig, a: usize) -> Option<AnchorOrigin> {
    let k = cfg.k();
    let mut first = 0;
    for (grid, &g) in cfg.grids.iter().enumerate() {
        let n = g * g * k;
        if a < first + n {
            let (cell, shape) = ((a - first) / k, (a - first) % k);
            return Some(AnchorOrigin { grid, row: cell / g, col: cell % g, shape });
        }
        first += n;
    }
    None
}

/// The anchors of `cfg` as corners `(y1, x1, y2, x2)`, computed as [`super::Anchors::new`]
/// computes them (centres and sizes in f64 like numpy, rounded to f32, then `ctr -/+ hw / 2` in
/// f32), without a tensor: the same numbers, cheap enough to evaluate thousands of configs.
pub fn anchor_corners(cfg: &AnchorConfig) -> Vec<[f32; 4]> {
    cfg.geometry()
        .iter()
        .map(|a| {
            let (cy, cx) = (a.cy as f32, a.cx as f32);
            let (hh, hw) = (a.h as f32 / 2.0, a.w as f32 / 2.0);
            [cy - hh, cx - hw, cy + hh, cx + hw]
        })
        .collect()
}

/// The lesson's `jaccard` of two corner boxes (no `+1`; an empty union gives 0), as
/// [`crate::boxes::iou_matrix_corners`] computes each entry.
pub fn corner_iou(p: &[f32; 4], q: &[f32; 4]) -> f32 {
    let sa = (p[2] - p[0]) * (p[3] - p[1]);
    let w = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
    let h = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
    let inter = w * h;
    let sb = (q[2] - q[0]) * (q[3] - q[1]);
    let iou = inter / (sa + sb - inter);
    if iou.is_nan() {
        0.0
    } else {
        iou
    }
}

/// Each box's best IoU with any anchor and that anchor (the first of equals), `(iou, anchor)`.
pub fn best_anchors(anchors: &[[f32; 4]], boxes: &[[f32; 4]]) -> Vec<(f32, usize)> {
    boxes
        .iter()
        .map(|b| {
            anchors.iter().enumerate().fold((f32::NEG_INFINITY, 0), |best, (a, q)| {
                let iou = corner_iou(b, q);
                if iou > best.0 {
                    (iou, a)
                } else {
                    best
                }
            })
        })
        .collect()
}

/// One object and the anchor that overlaps it most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectCoverage {
    pub object: UnitBox,
    pub best_iou: f32,
    pub best_anchor: usize,
    pub origin: AnchorOrigin,
}

/// How well an anchor config covers a set of boxes (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub config: AnchorConfig,
    pub threshold: f64,
    /// Every object, in the order given.
    pub objects: Vec<ObjectCoverage>,
    /// Best matches per grid (aligned with `config.grids`) and per shape (with `config.scales()`).
    pub by_grid: Vec<usize>,
    pub by_shape: Vec<usize>,
}

impl Coverage {
    /// The coverage of `boxes` by the anchors of `cfg`, at [`MATCH_IOU`]. Errors: a config
    /// without anchors.
    pub fn new(cfg: &AnchorConfig, boxes: &[UnitBox]) -> Result<Self> {
        if cfg.is_empty() {
            return Err(Error::Invalid(format!("anchor coverage: the config {cfg:?} makes no anchors")));
        }
        let corners: Vec<[f32; 4]> = boxes.iter().map(|b| b.corners).collect();
        let best = best_anchors(&anchor_corners(cfg), &corners);
        let (mut by_grid, mut by_shape) = (vec![0; cfg.grids.len()], vec![0; cfg.k()]);
        let mut objects = Vec::with_capacity(boxes.len());
        for (b, (iou, a)) in boxes.iter().zip(best) {
            let origin = anchor_origin(cfg, a).ok_or_else(|| Error::Invalid(format!("anchor {a} of {}", cfg.len())))?;
            by_grid[origin.grid] += 1;
            by_shape[origin.shape] += 1;
            objects.push(ObjectCoverage { object: *b, best_iou: iou, best_anchor: a, origin });
        }
        Ok(Self { config: cfg.clone(), threshold: MATCH_IOU, objects, by_grid, by_shape })
    }

    /// [`Coverage::new`] of the objects of `ds` at training size `sz` ([`unit_boxes`]).
    pub fn of_dataset(cfg: &AnchorConfig, ds: &Dataset, sz: u32) -> Result<Self> {
        Self::new(cfg, &unit_boxes(ds, sz)?)
    }

    /// The share of objects whose best anchor overlaps them by more than the threshold: the
    /// recall the matching can reach at best (0 without objects).
    pub fn recall(&self) -> f64 {
        let n = self.objects.iter().filter(|o| o.best_iou as f64 > self.threshold).count();
        n as f64 / self.objects.len().max(1) as f64
    }

    /// The mean over objects of the best IoU (0 without objects).
    pub fn mean_best_iou(&self) -> f64 {
        self.objects.iter().map(|o| o.best_iou as f64).sum::<f64>() / self.objects.len().max(1) as f64
    }

    /// The objects no anchor overlaps by more than the threshold, worst first.
    pub fn uncovered(&self) -> Vec<&ObjectCoverage> {
        let mut v: Vec<&ObjectCoverage> =
            self.objects.iter().filter(|o| (o.best_iou as f64) <= self.threshold).collect();
        v.sort_by(|a, b| a.best_iou.total_cmp(&b.best_iou));
        v
    }

    /// A shape's name: `"zoom 0.70 x (1.00, 0.50)"` (`(h, w)` factors).
    pub fn shape_name(&self, shape: usize) -> String {
        let (nr, z) = (self.config.ratios.len().max(1), &self.config.zooms);
        let (zoom, (i, j)) = (z[shape / nr], self.config.ratios[shape % nr]);
        format!("zoom {zoom:.2} x ({i:.2}, {j:.2})")
    }

    /// The best anchor of an object as a pixel box of an `sz x sz` image (for drawing).
    pub fn anchor_bbox(&self, o: &ObjectCoverage, sz: f32) -> BBox {
        let c = anchor_corners(&self.config)[o.best_anchor];
        BBox::from_unit_corners(c, sz)
    }
}

/// The table `fastdet data anchors` and the notebook print: recall, mean IoU, the shares.
impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.objects.len();
        writeln!(
            f,
            "{} anchors ({} per cell on grids {:?}): {} objects, best IoU > {}: {:.1} %, mean best IoU {:.3}, {} uncovered",
            self.config.len(),
            self.config.k(),
            self.config.grids,
            n,
            self.threshold,
            100.0 * self.recall(),
            self.mean_best_iou(),
            self.uncovered().len()
        )?;
        let pct = |c: usize| 100.0 * c as f64 / n.max(1) as f64;
        for (g, c) in self.config.grids.iter().zip(&self.by_grid) {
            writeln!(f, "  grid {g}x{g}: {:>5.1} % of best matches", pct(*c))?;
        }
        for (s, c) in self.by_shape.iter().enumerate() {
            writeln!(f, "  {}: {:>5.1} %", self.shape_name(s), pct(*c))?;
        }
        Ok(())
    }
}

/// Several anchor configs' coverage of the same objects side by side, one row each (the
/// notebook's and `fastdet data stats --anchors`' comparison).
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageTable {
    pub rows: Vec<(String, Coverage)>,
}

impl CoverageTable {
    /// The header and each row's cells: name, anchors, k, objects, recall, mean IoU, uncovered.
    pub fn cells(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec!["anchors", "count", "k", "objects", "best IoU > 0.5", "mean best IoU", "uncovered"];
        let rows = self
            .rows
            .iter()
            .map(|(name, c)| {
                vec![
                    name.clone(),
                    c.config.len().to_string(),
                    c.config.k().to_string(),
                    c.objects.len().to_string(),
                    format!("{:.1} %", 100.0 * c.recall()),
                    format!("{:.3}", c.mean_best_iou()),
                    c.uncovered().len().to_string(),
                ]
            })
            .collect();
        (header, rows)
    }
}

impl fmt::Display for CoverageTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (header, rows) = self.cells();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
            .collect();
        let line = |cells: Vec<&str>| -> String {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect();
            padded.join("  ")
        };
        writeln!(f, "{}", line(header.clone()))?;
        for r in &rows {
            writeln!(f, "{}", line(r.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchors::Anchors;

    #[test]
    fn unit_boxes_squash_to_sz_and_leave_difficult_objects_out() {
        use crate::data::{ImageRecord, Object};
        let obj = |b: BBox, difficult| Object { bbox: b, class: 0, difficult };
        let rec = |w, h, objects| ImageRecord { id: 1, file_name: "a.jpg".into(), width: w, height: h, objects };
        let mut ds = Dataset {
            source: "hand-made.json".into(),
            image_dir: ".".into(),
            classes: vec!["cat".into()],
            category_ids: vec![],
            // 200 x 100: the box's outer edges 50..150 across and 0..50 down.
            images: vec![rec(
                200,
                100,
                vec![obj(BBox::new(0.0, 50.0, 49.0, 149.0), false), obj(BBox::new(0.0, 0.0, 9.0, 9.0), true)],
            )],
            warnings: vec![],
        };
        let b = unit_boxes(&ds, 224).unwrap();
        assert_eq!(b.len(), 1);
        // (top, left, bottom, right) = (0, 0.25, (50 * 2.24 - 1) / 224, (150 * 1.12 - 1) / 224).
        let want = [0.0, 0.25, (50.0 * 2.24 - 1.0) / 224.0, (150.0 * 1.12 - 1.0) / 224.0];
        for (g, w) in b[0].corners.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{:?}", b[0].corners);
        }
        ds.images[0].height = 0;
        let e = unit_boxes(&ds, 224).unwrap_err().to_string();
        assert!(e.contains("hand-made.json") && e.contains("a.jpg") && e.contains("200x0"), "{e}");
    }

    #[test]
    fn anchor_corners_are_those_of_the_tensor_anchors() {
        for cfg in [AnchorConfig::lesson_4x4(), AnchorConfig::lesson_189()] {
            let t: Vec<f32> = Vec::try_from(Anchors::new(&cfg, tch::Device::Cpu).corners.flatten(0, -1)).unwrap();
            let ours: Vec<f32> = anchor_corners(&cfg).into_iter().flatten().collect();
            assert_eq!(ours, t, "{cfg:?}");
        }
    }

    #[test]
    fn anchor_origin_follows_the_lesson_order() {
        let cfg = AnchorConfig::lesson_189();
        assert_eq!(anchor_origin(&cfg, 0), Some(AnchorOrigin { grid: 0, row: 0, col: 0, shape: 0 }));
        // 4x4 cells * 9 = 144 anchors on the first grid; 150 = 144 + 6: 2x2 grid, cell 0, shape 6.
        assert_eq!(anchor_origin(&cfg, 150), Some(AnchorOrigin { grid: 1, row: 0, col: 0, shape: 6 }));
        // 9 * 5 + 1 = 46: cell 5 of 4x4 (row 1, col 1), shape 1.
        assert_eq!(anchor_origin(&cfg, 46), Some(AnchorOrigin { grid: 0, row: 1, col: 1, shape: 1 }));
        assert_eq!(anchor_origin(&cfg, 188), Some(AnchorOrigin { grid: 2, row: 0, col: 0, shape: 8 }));
        assert_eq!(anchor_origin(&cfg, 189), None);
    }

    #[test]
    fn an_anchor_itself_is_covered_and_a_sliver_is_not() {
        let cfg = AnchorConfig::lesson_4x4();
        let ub = |c: [f32; 4]| UnitBox { image: 0, object: 0, corners: c };
        // The cell (1, 2) of the 4x4 grid exactly; a thin horizontal sliver across the image.
        let boxes = [ub([0.25, 0.5, 0.5, 0.75]), ub([0.45, 0.0, 0.55, 1.0])];
        let c = Coverage::new(&cfg, &boxes).unwrap();
        assert_eq!(c.objects[0].best_iou, 1.0);
        assert_eq!(c.objects[0].origin, AnchorOrigin { grid: 0, row: 1, col: 2, shape: 0 });
        // The sliver overlaps a cell by 0.05 x 0.25 over 0.1 + 0.0625 - 0.0125: 0.0125 / 0.15.
        assert!((c.objects[1].best_iou - 0.0125 / 0.15).abs() < 1e-6, "{}", c.objects[1].best_iou);
        assert_eq!(c.recall(), 0.5);
        assert_eq!(c.uncovered().len(), 1);
        assert_eq!((c.by_grid.clone(), c.by_shape.clone()), (vec![2], vec![2]));
    }
}
