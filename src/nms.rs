//! Non-maximum suppression (lesson 9, `pascal-multi.ipynb`), four entry points: [`nms`], greedy
//! NMS that keeps exactly what `torchvision.ops.nms` keeps, and its per-class [`batched_nms`];
//! the lesson's own `nms(boxes, scores, overlap, top_k)` ([`nms_lesson`]); and the
//! post-processing of the lesson's `show_nmf` without the drawing ([`nms_detections`]; the
//! picture is [`crate::show::show_nmf`]). IoU itself is in [`crate::boxes`].
//!
//! # Conventions
//! - **Corners, no `+1`.** Boxes are 4 corners `[a1, b1, a2, b2]` with area `(a2-a1)*(b2-b1)`,
//!   as in the lesson (`(y1, x1, y2, x2)`, 0..1 units) and in torchvision (`(x1, y1, x2, y2)`).
//!   IoU is symmetric in the two axes (and the float operations commute exactly), so both orders
//!   give bit-identical results; pass either, consistently. A [`BBox`] is used as
//!   `(top, left, bottom, right)` with the same no-`+1` rule (the lesson's `jaccard` on pixel
//!   boxes); the `+1` VOC rule lives in [`crate::metrics`].
//! - **IoU in `f32`**, as torchvision computes it:
//!   `inter / ((area_i + area_j) - inter)` with `inter = max(0, w) * max(0, h)`, compared as
//!   `f64` with the threshold: a box is suppressed when `IoU > iou_threshold` (strictly).
//! - **Order.** Scores are sorted descending, **ties by index ascending** (a stable sort: what
//!   torchvision 0.28's CPU kernel does, `scores.sort(stable=True, descending=True)`). `-0.0`
//!   ties with `0.0`. **NaN scores go last** (torch would put them first); they never panic.
//!   The returned indices are in that order.
//! - Degenerate boxes (zero or negative width or height) intersect nothing: they never suppress
//!   and are never suppressed (IoU `0/0` is NaN, and NaN is not `>` any threshold).
//!
//! # Speed
//! [`nms`] sorts once (one `u64` key per box), lays the boxes out as structure-of-arrays with
//! precomputed areas, and for a threshold `>= 0` (the only case where suppression needs a
//! positive intersection) visits only the boxes sharing a grid cell with each kept box; the
//! cells are sized by the mean box. Boxes covering many cells, a negative threshold or
//! non-finite coordinates fall back to a branch-free linear scan. Every candidate's IoU is
//! computed with the same `f32` formula, so the kept set is the same as the plain loop's
//! (torchvision's kernel line by line, `nms_reference` in `tests/it/nms.rs`).

use crate::boxes::{tensor_corners, BBox};
use crate::error::{Error, Result};
use tch::{Kind, Tensor};

// ------------------------------------------------------------------------------------------
// Greedy NMS
// ------------------------------------------------------------------------------------------

/// Sort key of a score for "descending, NaN last": larger key = earlier. `-0.0` maps like `0.0`.
#[inline]
fn score_key(s: f32) -> u32 {
    if s.is_nan() {
        return 0;
    }
    let s = if s == 0.0 { 0.0 } else { s };
    let b = s.to_bits();
    // Monotone map of the non-NaN floats onto u32 (ascending); 0 is left for NaN.
    let k = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    k.max(1)
}

/// Indices sorted by score descending, ties by index ascending, NaN last.
pub(crate) fn score_order(scores: &[f32]) -> Vec<usize> {
    let mut keys: Vec<u64> =
        scores.iter().enumerate().map(|(i, &s)| ((!score_key(s) as u64) << 32) | i as u64).collect();
    keys.sort_unstable();
    keys.into_iter().map(|k| (k & 0xffff_ffff) as usize).collect()
}

/// The largest `f32` `t` with `x > t  <=>  (x as f64) > thr` for every `f32` `x`.
fn f32_threshold(thr: f64) -> f32 {
    let t = thr as f32;
    if (t as f64) > thr {
        next_down(t)
    } else {
        t
    }
}

fn next_down(x: f32) -> f32 {
    if x.is_nan() || x == f32::NEG_INFINITY {
        return x;
    }
    if x == 0.0 {
        return -f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b - 1 } else { b + 1 })
}

fn check_lengths(boxes: usize, scores: usize) -> Result<()> {
    if boxes != scores {
        return Err(Error::Invalid(format!("nms: {boxes} boxes but {scores} scores")));
    }
    if boxes > u32::MAX as usize {
        return Err(Error::Invalid(format!("nms: {boxes} boxes is more than 2^32")));
    }
    Ok(())
}

/// Boxes in score order, structure-of-arrays.
struct Sorted {
    order: Vec<usize>,
    x1: Vec<f32>,
    y1: Vec<f32>,
    x2: Vec<f32>,
    y2: Vec<f32>,
    area: Vec<f32>,
}

impl Sorted {
    fn new(boxes: &[[f32; 4]], scores: &[f32]) -> Self {
        let order = score_order(scores);
        let n = order.len();
        let (mut x1, mut y1, mut x2, mut y2, mut area) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &i in &order {
            let b = boxes[i];
            x1.push(b[0]);
            y1.push(b[1]);
            x2.push(b[2]);
            y2.push(b[3]);
            area.push((b[2] - b[0]) * (b[3] - b[1]));
        }
        Self { order, x1, y1, x2, y2, area }
    }

    /// IoU of sorted boxes `i` and `j`, torchvision's formula.
    #[inline(always)]
    fn iou(&self, i: usize, j: usize) -> f32 {
        let xx1 = if self.x1[i] < self.x1[j] { self.x1[j] } else { self.x1[i] };
        let yy1 = if self.y1[i] < self.y1[j] { self.y1[j] } else { self.y1[i] };
        let xx2 = if self.x2[j] < self.x2[i] { self.x2[j] } else { self.x2[i] };
        let yy2 = if self.y2[j] < self.y2[i] { self.y2[j] } else { self.y2[i] };
        let w = if 0.0 < xx2 - xx1 { xx2 - xx1 } else { 0.0 };
        let h = if 0.0 < yy2 - yy1 { yy2 - yy1 } else { 0.0 };
        let inter = w * h;
        inter / (self.area[i] + self.area[j] - inter)
    }

    /// Suppress every box after `i` in score order with IoU > t: a branch-free loop the
    /// compiler vectorises (suppressed boxes are computed too, and stay suppressed).
    #[inline]
    fn suppress_tail(&self, i: usize, t: f32, sup: &mut [u8]) {
        let (ix1, iy1, ix2, iy2, ia) = (self.x1[i], self.y1[i], self.x2[i], self.y2[i], self.area[i]);
        let n = self.x1.len();
        let (x1, y1, x2, y2, area) =
            (&self.x1[i + 1..n], &self.y1[i + 1..n], &self.x2[i + 1..n], &self.y2[i + 1..n], &self.area[i + 1..n]);
        let sup = &mut sup[i + 1..n];
        for k in 0..sup.len() {
            let xx1 = if ix1 < x1[k] { x1[k] } else { ix1 };
            let yy1 = if iy1 < y1[k] { y1[k] } else { iy1 };
            let xx2 = if x2[k] < ix2 { x2[k] } else { ix2 };
            let yy2 = if y2[k] < iy2 { y2[k] } else { iy2 };
            let w = if 0.0 < xx2 - xx1 { xx2 - xx1 } else { 0.0 };
            let h = if 0.0 < yy2 - yy1 { yy2 - yy1 } else { 0.0 };
            let inter = w * h;
            let ovr = inter / (ia + area[k] - inter);
            sup[k] |= (ovr > t) as u8;
        }
    }
}

/// A box covering more grid cells than this is scanned linearly instead.
const MAX_CELLS_PER_BOX: usize = 16;

/// Greedy NMS keeping exactly what `torchvision.ops.nms(boxes, scores, iou_threshold)` keeps,
/// in the same order (see the module docs for conventions and the algorithm). Boxes are
/// corners `[a1, b1, a2, b2]` (torchvision's `(x1, y1, x2, y2)` or the lesson's
/// `(y1, x1, y2, x2)`). An error only when the lengths differ.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>> {
    check_lengths(boxes.len(), scores.len())?;
    let s = Sorted::new(boxes, scores);
    let n = s.order.len();
    if iou_threshold.is_nan() {
        return Ok(s.order); // nothing is > NaN
    }
    let t = f32_threshold(iou_threshold);
    let finite = boxes.iter().all(|b| b.iter().all(|c| c.is_finite()));
    let mut sup = vec![0u8; n];
    let mut keep = Vec::new();
    if iou_threshold < 0.0 || !finite || n < 64 {
        for i in 0..n {
            if sup[i] != 0 {
                continue;
            }
            keep.push(s.order[i]);
            s.suppress_tail(i, t, &mut sup);
        }
        return Ok(keep);
    }
    let grid = Grid::new(&s);
    let mut cursor: Vec<u32> = grid.offsets[..grid.offsets.len() - 1].to_vec();
    let mut big_cursor = 0usize;
    for i in 0..n {
        if sup[i] != 0 {
            continue;
        }
        keep.push(s.order[i]);
        match grid.cells_of[i] {
            Cells::None => {}
            Cells::Big => s.suppress_tail(i, t, &mut sup),
            Cells::Range { cx0, cx1, cy0, cy1 } => {
                for cy in cy0..=cy1 {
                    for cx in cx0..=cx1 {
                        let c = cy as usize * grid.gx + cx as usize;
                        let end = grid.offsets[c + 1] as usize;
                        let mut k = cursor[c] as usize;
                        // Entries at or before i are kept or suppressed already: skip them for good.
                        while k < end && grid.entries[k] as usize <= i {
                            k += 1;
                        }
                        cursor[c] = k as u32;
                        for &j in &grid.entries[k..end] {
                            let j = j as usize;
                            if sup[j] == 0 && s.iou(i, j) > t {
                                sup[j] = 1;
                            }
                        }
                    }
                }
                while big_cursor < grid.big.len() && grid.big[big_cursor] as usize <= i {
                    big_cursor += 1;
                }
                for &j in &grid.big[big_cursor..] {
                    let j = j as usize;
                    if sup[j] == 0 && s.iou(i, j) > t {
                        sup[j] = 1;
                    }
                }
            }
        }
    }
    Ok(keep)
}

#[derive(Clone, Copy)]
enum Cells {
    /// Zero or negative width or height: intersects nothing.
    None,
    /// Covers too many cells: compared with every later box.
    Big,
    Range {
        cx0: u32,
        cx1: u32,
        cy0: u32,
        cy1: u32,
    },
}

/// Boxes (by sorted position) listed in every grid cell their closed extent touches, CSR.
/// Two boxes with a positive intersection share an interior point, so they share a cell.
struct Grid {
    gx: usize,
    offsets: Vec<u32>,
    entries: Vec<u32>,
    big: Vec<u32>,
    cells_of: Vec<Cells>,
}

impl Grid {
    fn new(s: &Sorted) -> Self {
        let n = s.order.len();
        let valid = |i: usize| s.x2[i] > s.x1[i] && s.y2[i] > s.y1[i];
        let (mut minx, mut miny, mut maxx, mut maxy) =
            (f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY);
        let (mut sw, mut sh, mut nv) = (0f64, 0f64, 0usize);
        for i in (0..n).filter(|&i| valid(i)) {
            minx = minx.min(s.x1[i]);
            miny = miny.min(s.y1[i]);
            maxx = maxx.max(s.x2[i]);
            maxy = maxy.max(s.y2[i]);
            sw += (s.x2[i] - s.x1[i]) as f64;
            sh += (s.y2[i] - s.y1[i]) as f64;
            nv += 1;
        }
        let max_side = ((4 * nv.max(1)) as f64).sqrt().ceil().max(1.0);
        let (spanx, spany) = ((maxx as f64 - minx as f64).max(0.0), (maxy as f64 - miny as f64).max(0.0));
        let (mw, mh) = (sw / nv.max(1) as f64, sh / nv.max(1) as f64);
        let gx = if mw > 0.0 { (spanx / mw).ceil().clamp(1.0, max_side) as usize } else { 1 };
        let gy = if mh > 0.0 { (spany / mh).ceil().clamp(1.0, max_side) as usize } else { 1 };
        let ix = if spanx > 0.0 { gx as f64 / spanx } else { 0.0 };
        let iy = if spany > 0.0 { gy as f64 / spany } else { 0.0 };
        let cell = |v: f32, lo: f32, inv: f64, g: usize| -> u32 {
            (((v as f64 - lo as f64) * inv).floor().max(0.0) as usize).min(g - 1) as u32
        };
        let mut cells_of = Vec::with_capacity(n);
        let mut counts = vec![0u32; gx * gy + 1];
        let mut big = Vec::new();
        for i in 0..n {
            if !valid(i) {
                cells_of.push(Cells::None);
                continue;
            }
            let (cx0, cx1) = (cell(s.x1[i], minx, ix, gx), cell(s.x2[i], minx, ix, gx));
            let (cy0, cy1) = (cell(s.y1[i], miny, iy, gy), cell(s.y2[i], miny, iy, gy));
            if ((cx1 - cx0 + 1) as usize) * ((cy1 - cy0 + 1) as usize) > MAX_CELLS_PER_BOX {
                cells_of.push(Cells::Big);
                big.push(i as u32);
                continue;
            }
            cells_of.push(Cells::Range { cx0, cx1, cy0, cy1 });
            for cy in cy0..=cy1 {
                for cx in cx0..=cx1 {
                    counts[cy as usize * gx + cx as usize + 1] += 1;
                }
            }
        }
        for c in 1..counts.len() {
            counts[c] += counts[c - 1];
        }
        let offsets = counts;
        let mut fill = offsets.clone();
        let mut entries = vec![0u32; *offsets.last().unwrap_or(&0) as usize];
        for (i, c) in cells_of.iter().enumerate() {
            if let Cells::Range { cx0, cx1, cy0, cy1 } = *c {
                for cy in cy0..=cy1 {
                    for cx in cx0..=cx1 {
                        let c = cy as usize * gx + cx as usize;
                        entries[fill[c] as usize] = i as u32;
                        fill[c] += 1;
                    }
                }
            }
        }
        Self { gx, offsets, entries, big, cells_of }
    }
}

/// Per-class NMS: boxes of different classes never suppress each other. Returns the kept
/// indices sorted by score descending (ties by index, NaN last), like
/// `torchvision.ops.batched_nms`.
///
/// Runs [`nms`] on each class separately, on the boxes as given. torchvision does this too
/// above 1,000 boxes on the CPU (`_batched_nms_vanilla`); below that it shifts each class's
/// boxes by `class * (max_coordinate + 1)` and runs one NMS (`_batched_nms_coordinate_trick`),
/// where the shifted `f32` coordinates round, so an IoU within rounding of the threshold can
/// go the other way there. On exactly representable shifts (whole or binary-fraction
/// coordinates) both agree exactly.
pub fn batched_nms(boxes: &[[f32; 4]], scores: &[f32], classes: &[usize], iou_threshold: f64) -> Result<Vec<usize>> {
    check_lengths(boxes.len(), scores.len())?;
    if classes.len() != boxes.len() {
        return Err(Error::Invalid(format!("batched_nms: {} boxes but {} classes", boxes.len(), classes.len())));
    }
    // Group indices by class, index order within a class (any class id, no table by id).
    let mut grouped: Vec<usize> = (0..classes.len()).collect();
    grouped.sort_unstable_by_key(|&i| (classes[i], i));
    let mut keep = Vec::new();
    let (mut b, mut s) = (Vec::new(), Vec::new());
    for idx in grouped.chunk_by(|&i, &j| classes[i] == classes[j]) {
        b.clear();
        s.clear();
        b.extend(idx.iter().map(|&i| boxes[i]));
        s.extend(idx.iter().map(|&i| scores[i]));
        keep.extend(nms(&b, &s, iou_threshold)?.into_iter().map(|k| idx[k]));
    }
    keep.sort_unstable();
    let kept_scores: Vec<f32> = keep.iter().map(|&i| scores[i]).collect();
    Ok(score_order(&kept_scores).into_iter().map(|k| keep[k]).collect())
}

// ------------------------------------------------------------------------------------------
// The lesson's nms and show_nmf
// ------------------------------------------------------------------------------------------

/// The lesson's `nms(boxes, scores, overlap=0.5, top_k=100)` on slices whose lengths agree
/// (checked by the caller): only the `top_k` highest scores take part (the lesson cuts
/// **before** suppressing), then greedy suppression that keeps a box only while
/// `IoU <= overlap` (compared in `f32`, as `IoU.le(overlap)` on a float tensor does; a NaN IoU
/// therefore suppresses), with the lesson's union `(area_j - inter) + area_i`. Ties in score:
/// lower index first (the lesson's `scores.sort` is not stable). Returns the kept indices, best
/// first.
fn nms_topk(boxes: &[[f32; 4]], scores: &[f32], overlap: f64, top_k: usize) -> Vec<usize> {
    let mut idx = score_order(scores);
    idx.truncate(top_k);
    let ov = overlap as f32;
    let area: Vec<f32> = boxes.iter().map(|b| (b[2] - b[0]) * (b[3] - b[1])).collect();
    let mut keep = Vec::new();
    let mut rest = Vec::with_capacity(idx.len());
    while let Some(&i) = idx.first() {
        keep.push(i);
        let bi = boxes[i];
        rest.clear();
        for &j in &idx[1..] {
            let bj = boxes[j];
            // torch.clamp(xx1, min=x1[i]) etc., then w, h clamped at 0.
            let w = (bj[2].min(bi[2]) - bj[0].max(bi[0])).max(0.0);
            let h = (bj[3].min(bi[3]) - bj[1].max(bi[1])).max(0.0);
            let inter = w * h;
            let union = (area[j] - inter) + area[i];
            if inter / union <= ov {
                rest.push(j);
            }
        }
        std::mem::swap(&mut idx, &mut rest);
    }
    keep
}

/// The lesson's `nms(boxes, scores, overlap, top_k)` on tensors: `boxes [N, 4]` corners,
/// `scores [N]`; returns `(keep, count)` with `keep` an int64 tensor of length `N` whose first
/// `count` entries are the kept indices (the rest zero), as the lesson returns them
/// (`ids, count = nms(...); ids = ids[:count]`). Only the `top_k` highest scores take part
/// (the lesson cuts **before** suppressing); a box is kept while its `IoU <= overlap` with every
/// kept box (in `f32`, as the lesson's `IoU.le(overlap)`; a NaN IoU suppresses), with the
/// lesson's union `(area_j - inter) + area_i`; ties in score: lower index first.
pub fn nms_lesson(boxes: &Tensor, scores: &Tensor, overlap: f64, top_k: usize) -> Result<(Tensor, usize)> {
    let n = scores.size().first().copied().unwrap_or(0);
    let b = tensor_corners(boxes)?;
    let s: Vec<f32> = Vec::try_from(scores.to_device(tch::Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
    check_lengths(b.len(), s.len())?;
    let keep = nms_topk(&b, &s, overlap, top_k);
    let mut out = vec![0i64; n.max(0) as usize];
    for (o, &k) in out.iter_mut().zip(&keep) {
        *o = k as i64;
    }
    Ok((Tensor::from_slice(&out), keep.len()))
}

/// One detected object of one image: a box in pixels, a class index (no background) and its
/// score. ([`crate::metrics::Detection`] is the same placed in a dataset, with its image id.)
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoredBox {
    pub bbox: BBox,
    pub class: usize,
    pub score: f32,
}

/// Settings of the lesson's `show_nmf` ([`nms_detections`]); the defaults are the lesson's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmfOpts {
    /// Keep class scores (sigmoid of the logits) strictly above this: 0.25.
    pub thresh: f32,
    /// NMS overlap: 0.4.
    pub overlap: f64,
    /// The lesson's `top_k` of each class: 50.
    pub top_k: usize,
}

impl Default for NmfOpts {
    fn default() -> Self {
        Self { thresh: 0.25, overlap: 0.4, top_k: 50 }
    }
}

impl NmfOpts {
    /// The post-processing every mAP in fastdet is computed after: scores over 0.01, NMS at 0.4,
    /// the best 100 of each class. The lesson's 0.25 and 50 ([`NmfOpts::default`], right for
    /// pictures) drop the low-scoring detections that the precision-recall curve needs at high
    /// recall, so an mAP after them is cut short; 0.01 and 100 are what detection benchmarks
    /// evaluate with (torchvision's SSD: `score_thresh=0.01`, `detections_per_img=200`).
    pub fn evaluation() -> Self {
        Self { thresh: 0.01, overlap: 0.4, top_k: 100 }
    }
}

/// The lesson's `show_nmf` post-processing without the drawing, for one image: per class, the
/// scores over a threshold, then the lesson's NMS.
///
/// `boxes`: `[A, 4]` predicted corners `(y1, x1, y2, x2)` in 0..1 units (`actn_to_bb`);
/// `class_logits`: `[A, C+1]`, background last (the lesson's `b_clas[idx]`). For each class
/// `0..C` (background skipped), scores = `sigmoid(logit)`; those `> thresh` go through
/// the lesson's NMS ([`nms_lesson`]`(overlap, top_k)`). Boxes are scaled by `size` to pixels as
/// [`BBox::from_unit_corners`]. Detections come class by class, best first within a class.
pub fn nms_detections(boxes: &Tensor, class_logits: &Tensor, size: f32, opts: NmfOpts) -> Result<Vec<ScoredBox>> {
    let b = tensor_corners(boxes)?;
    let cs = class_logits.size();
    if cs.len() != 2 || cs[0] as usize != b.len() || cs[1] < 1 {
        return Err(Error::Shape {
            what: format!("nms_detections: class logits of {} boxes", b.len()),
            expected: format!("[{}, C+1]", b.len()),
            found: cs,
        });
    }
    let logits: Vec<f32> =
        Vec::try_from(class_logits.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous().view([-1]))?;
    Ok(detections_of_slices(&b, &logits, cs[1] as usize, size, opts))
}

/// [`nms_detections`] on plain slices: `logits` row-major `[A, n_cols]` with background last.
fn detections_of_slices(boxes: &[[f32; 4]], logits: &[f32], n_cols: usize, size: f32, opts: NmfOpts) -> Vec<ScoredBox> {
    let mut out = Vec::new();
    let (mut cb, mut cs) = (Vec::new(), Vec::new());
    for cl in 0..n_cols.saturating_sub(1) {
        cb.clear();
        cs.clear();
        for (a, b) in boxes.iter().enumerate() {
            let p = 1.0 / (1.0 + (-logits[a * n_cols + cl]).exp());
            if p > opts.thresh {
                cb.push(*b);
                cs.push(p);
            }
        }
        if cs.is_empty() {
            continue;
        }
        let keep = nms_topk(&cb, &cs, opts.overlap, opts.top_k);
        out.extend(keep.into_iter().map(|k| ScoredBox {
            bbox: BBox::from_unit_corners(cb[k], size),
            class: cl,
            score: cs[k],
        }));
    }
    out
}
