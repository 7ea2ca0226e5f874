//! Lesson 9's SSD loss (`pascal-multi.ipynb`): matching anchors to ground truth
//! (`map_to_ground_truth`), the lesson's `get_y`, the classification losses (`BCE_Loss`,
//! `FocalLoss`) and `ssd_1_loss` / `ssd_loss`, which return both parts by name ([`LossParts`]).
//!
//! Conventions: boxes inside the loss are corners `(y1, x1, y2, x2)` in 0..1 units of the image
//! (the batch's pixel boxes divided by `sz`, as the lesson's `get_y`); anchors are
//! [`Anchors`], in the order the head's activations come ([`crate::model::ssd::flatten_conv`]).
//!
//! The lesson's `map_to_ground_truth` (the default, [`Matching::Lesson`]) loses a ground truth
//! when two of them have the same best anchor (the later one takes it): [`lost_objects`] finds
//! them, [`count_lost`] counts them over a dataset. [`Matching::NoGtLost`] gives each ground
//! truth its own anchor.

use crate::anchors::{actn_to_bb, Anchors};
use crate::boxes::{iou_matrix, jaccard, BBox};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::ssd::{ClassLoss, Matching, SsdConfig, SsdOutput};
use tch::{Device, Kind, Tensor};

/// The overlap a forced match is given, so that it beats any real IoU (the lesson's `1.99`).
pub const FORCED_OVERLAP: f32 = 1.99;

/// The matching on plain numbers: `overlaps` is `[n_gt, n_anchors]` row-major. Returns each
/// anchor's overlap ([`FORCED_OVERLAP`] where forced) and ground-truth index. Ties go to the lower index (as
/// PyTorch's `max(dim)`); NaN overlaps count as -inf.
pub fn match_anchors(overlaps: &[f32], n_gt: usize, n_anc: usize, matching: Matching) -> Result<(Vec<f32>, Vec<i64>)> {
    if overlaps.len() != n_gt * n_anc {
        return Err(Error::Invalid(format!(
            "match_anchors: {} overlaps for {n_gt} ground truths x {n_anc} anchors",
            overlaps.len()
        )));
    }
    let at = |g: usize, a: usize| {
        let v = overlaps[g * n_anc + a];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    // Each anchor: the ground truth it overlaps most (the lesson's `overlaps.max(0)`).
    let mut gt_overlap = vec![0f32; n_anc];
    let mut gt_idx = vec![0i64; n_anc];
    if n_gt == 0 {
        return Ok((gt_overlap, gt_idx));
    }
    for a in 0..n_anc {
        let mut best = 0;
        for g in 1..n_gt {
            if at(g, a) > at(best, a) {
                best = g;
            }
        }
        gt_overlap[a] = at(best, a).max(0.0); // -inf from NaN overlaps -> 0
        gt_idx[a] = best as i64;
    }
    // Each ground truth's best anchor among `free` (the lesson's `overlaps.max(1)`).
    let best_anchor = |g: usize, free: &dyn Fn(usize) -> bool| -> Option<usize> {
        let mut best: Option<usize> = None;
        for a in (0..n_anc).filter(|&a| free(a)) {
            if best.is_none_or(|b| at(g, a) > at(g, b)) {
                best = Some(a);
            }
        }
        best
    };
    match matching {
        Matching::Lesson => {
            let prior: Vec<usize> = (0..n_gt).filter_map(|g| best_anchor(g, &|_| true)).collect();
            for &a in &prior {
                gt_overlap[a] = FORCED_OVERLAP;
            }
            for (g, &a) in prior.iter().enumerate() {
                gt_idx[a] = g as i64;
            }
        }
        Matching::NoGtLost => {
            let best_iou: Vec<f32> =
                (0..n_gt).map(|g| (0..n_anc).map(|a| at(g, a)).fold(f32::NEG_INFINITY, f32::max)).collect();
            let mut order: Vec<usize> = (0..n_gt).collect();
            order.sort_by(|&a, &b| best_iou[b].total_cmp(&best_iou[a]).then(a.cmp(&b)));
            let mut taken = vec![false; n_anc];
            for g in order {
                if let Some(a) = best_anchor(g, &|a| !taken[a]) {
                    taken[a] = true;
                    gt_overlap[a] = FORCED_OVERLAP;
                    gt_idx[a] = g as i64;
                }
            }
        }
    }
    Ok((gt_overlap, gt_idx))
}

/// The ground truths that a matching leaves without a positive anchor (none of the anchors
/// matched with an overlap over `pos_iou` points to them): the objects the loss never sees.
/// `overlaps` is `[n_gt, n_anchors]` row-major, as for [`match_anchors`].
pub fn lost_objects(
    overlaps: &[f32],
    n_gt: usize,
    n_anc: usize,
    matching: Matching,
    pos_iou: f64,
) -> Result<Vec<usize>> {
    let (gt_overlap, gt_idx) = match_anchors(overlaps, n_gt, n_anc, matching)?;
    let mut seen = vec![false; n_gt];
    for (o, g) in gt_overlap.iter().zip(&gt_idx) {
        if *o as f64 > pos_iou {
            seen[*g as usize] = true;
        }
    }
    Ok((0..n_gt).filter(|&g| !seen[g]).collect())
}

/// How many (non-difficult) objects of the images `indices` of `ds` a matching loses, with the
/// images squashed to `sz x sz` as the lesson's loader does (`CropType::No`): `(lost, objects,
/// the images that lose one)`.
pub fn count_lost(
    ds: &Dataset,
    indices: &[usize],
    anchors: &Anchors,
    sz: f32,
    matching: Matching,
    pos_iou: f64,
) -> Result<(usize, usize, Vec<usize>)> {
    let anc = anchors.to_bboxes(1.0)?;
    let (mut lost, mut total, mut images) = (0, 0, vec![]);
    for &i in indices {
        let rec = ds
            .images
            .get(i)
            .ok_or_else(|| Error::Invalid(format!("count_lost: image index {i} of {} images", ds.len())))?;
        let (sy, sx) = (sz / rec.height as f32, sz / rec.width as f32);
        let gt: Vec<BBox> = ds
            .annotations(i)
            .iter()
            .map(|(b, _)| b.scale(sy, sx))
            .map(|b| BBox::from_array(b.to_array().map(|v| v / sz)))
            .collect();
        let ov = iou_matrix(&gt, &anc);
        let l = lost_objects(&ov.data, gt.len(), anc.len(), matching, pos_iou)?;
        total += gt.len();
        if !l.is_empty() {
            lost += l.len();
            images.push(i);
        }
    }
    Ok((lost, total, images))
}

/// Lesson 9's `map_to_ground_truth(overlaps)`: `overlaps` = IoU `[n_gt, A]` -> `(gt_overlap
/// [A] float, gt_idx [A] int64)` on the same device. See [`Matching`] for how forced matches
/// are chosen. (Computed on the CPU: the matrix is small.)
pub fn map_to_ground_truth(overlaps: &Tensor, matching: Matching) -> Result<(Tensor, Tensor)> {
    let size = overlaps.size();
    if size.len() != 2 {
        return Err(Error::Shape {
            what: "map_to_ground_truth: overlaps".into(),
            expected: "[n_gt, A]".into(),
            found: size,
        });
    }
    let (n_gt, n_anc) = (size[0], size[1]);
    let v: Vec<f32> = Vec::try_from(overlaps.detach().to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
    let (o, i) = match_anchors(&v, n_gt as usize, n_anc as usize, matching)?;
    let dev = overlaps.device();
    Ok((Tensor::from_slice(&o).to_device(dev), Tensor::from_slice(&i).to_device(dev)))
}

/// Lesson 9's `get_y(bbox, clas)`: one image's padded pixel boxes `[N, 4]` and classes `[N]` ->
/// the rows with `y2 - y1 > 0` (padding is all zeros), boxes divided by `sz`. Note it also
/// drops a real box one pixel high; [`ssd_loss`] uses the batch's `n_objects` when given.
pub fn get_y(bbox: &Tensor, clas: &Tensor, sz: f64) -> (Tensor, Tensor) {
    let bbox = bbox.view([-1, 4]) / sz; // [N, 4]
    let keep = (bbox.select(1, 2) - bbox.select(1, 0)).gt(0.0).nonzero().squeeze_dim(1);
    (bbox.index_select(0, &keep), clas.view([-1]).index_select(0, &keep))
}

// ---------------------------------------------------------------------------------------------
// Loss

/// The two parts of the SSD loss, by name; [`LossParts::total`] is what training minimises.
#[derive(Debug)]
pub struct LossParts {
    /// Mean L1 distance of positive anchors' boxes to their ground truths (0..1 units), summed
    /// over the batch's images.
    pub loc: Tensor,
    /// The classification loss, summed over the batch's images.
    pub class: Tensor,
}

impl LossParts {
    pub fn total(&self) -> Tensor {
        &self.loc + &self.class
    }
}

/// PyTorch 0.3's `binary_cross_entropy_with_logits` (elementwise, before the weight): the form
/// the lesson ran, which lets a gradient flow through a weight computed from the logits.
fn bce_with_logits(x: &Tensor, t: &Tensor) -> Tensor {
    let max_val = (-x).clamp_min(0.0);
    x - x * t + &max_val + ((-&max_val).exp() + (-x - &max_val).exp()).log()
}

/// Lesson 9's `BCE_Loss(C)` / `FocalLoss(C)`: `logits [A, C+1]`, `gt_clas [A]` in `0..=C` (`C` =
/// background) -> scalar. Targets are one-hot over `C + 1`; the background column is dropped
/// from targets and logits; the summed (weighted) BCE is divided by `C`.
pub fn class_loss(logits: &Tensor, gt_clas: &Tensor, loss: ClassLoss) -> Tensor {
    let c = logits.size()[1] - 1;
    let t = gt_clas.one_hot(c + 1).to_kind(logits.kind()).narrow(1, 0, c); // [A, C]
    let x = logits.narrow(1, 0, c); // [A, C]
    let l = bce_with_logits(&x, &t); // [A, C]
    let l = match loss {
        ClassLoss::Bce => l,
        ClassLoss::Focal { alpha, gamma } => {
            let p = x.sigmoid();
            let (one_m_p, one_m_t): (Tensor, Tensor) = (1.0 - &p, 1.0 - &t);
            let pt: Tensor = &p * &t + one_m_p * &one_m_t;
            let w: Tensor = &t * alpha + one_m_t * (1.0 - alpha);
            let one_m_pt: Tensor = 1.0 - pt;
            l * (w * one_m_pt.pow_tensor_scalar(gamma))
        }
    };
    l.sum(Kind::Float) / c as f64
}

/// Lesson 9's `ssd_1_loss` for one image whose padding is already removed: `class_logits [A,
/// C+1]`, `box_offsets [A, 4]`, ground truth `bbox [n, 4]` in 0..1 corners and `clas [n]`.
/// Anchors matched with overlap > `pos_iou` are positives; the others are background (`C`).
/// `loc` = mean |box - ground truth| over the positives (0 when there are none); `class` =
/// [`class_loss`]. An image with no objects has only background anchors.
pub fn ssd_1_loss(
    class_logits: &Tensor,
    box_offsets: &Tensor,
    bbox: &Tensor,
    clas: &Tensor,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<LossParts> {
    let n_anc = anchors.len() as i64;
    let dev = class_logits.device();
    let n_gt = bbox.size()[0];
    let (gt_clas, loc) = if n_gt == 0 {
        (Tensor::full([n_anc], cfg.n_classes, (Kind::Int64, dev)), Tensor::zeros([], (Kind::Float, dev)))
    } else {
        let overlaps = jaccard(&bbox.detach(), &anchors.corners); // [n, A]
        let v: Vec<f32> = Vec::try_from(overlaps.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let (gt_overlap, gt_idx) = match_anchors(&v, n_gt as usize, n_anc as usize, cfg.matching)?;
        let pos: Vec<bool> = gt_overlap.iter().map(|&o| o as f64 > cfg.pos_iou).collect();
        let pos_idx: Vec<i64> = (0..n_anc).filter(|&a| pos[a as usize]).collect();
        let gt_idx = Tensor::from_slice(&gt_idx).to_device(dev); // [A]
        let neg = Tensor::from_slice(&pos).to_device(dev).logical_not(); // [A]
        let gt_clas = clas.to_kind(Kind::Int64).index_select(0, &gt_idx).masked_fill(&neg, cfg.n_classes); // [A]
        let loc = if pos_idx.is_empty() {
            Tensor::zeros([], (Kind::Float, dev))
        } else {
            let pos_idx = Tensor::from_slice(&pos_idx).to_device(dev); // [P]
            let a_ic = actn_to_bb(&box_offsets.index_select(0, &pos_idx), &anchors.index_select(&pos_idx)); // [P, 4]
            let gt_bbox = bbox.index_select(0, &gt_idx.index_select(0, &pos_idx)); // [P, 4]
            (a_ic - gt_bbox).abs().mean(Kind::Float)
        };
        (gt_clas, loc)
    };
    Ok(LossParts { loc, class: class_loss(class_logits, &gt_clas, cfg.class_loss) })
}

/// Lesson 9's `ssd_loss`: the sum over the batch's images of [`ssd_1_loss`].
///
/// `bbox [B, N, 4]` are pixel boxes `(top, left, bottom, right)` of `sz x sz` images and `class
/// [B, N]`, with zero rows in front as padding. With `n_objects [B]` (the loader's
/// [`crate::data::BatchTarget::Boxes`]) the last `n_objects[i]` rows of image `i` are its
/// objects; with `None` padding is removed as the lesson's [`get_y`] does (rows with `bottom -
/// top <= 0` dropped). Errors when the output's anchors or classes do not fit `anchors`/`cfg`,
/// or a class is out of range.
pub fn ssd_loss(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    n_objects: Option<&Tensor>,
    sz: f64,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<LossParts> {
    let parts = ssd_loss_per_image(out, bbox, class, n_objects, sz, anchors, cfg)?;
    let zero = || Tensor::zeros([], (Kind::Float, out.class_logits.device()));
    let (mut loc, mut cls) = (None::<Tensor>, None::<Tensor>);
    for p in parts {
        loc = Some(loc.map_or(p.loc.shallow_clone(), |l| l + &p.loc));
        cls = Some(cls.map_or(p.class.shallow_clone(), |c| c + &p.class));
    }
    Ok(LossParts { loc: loc.unwrap_or_else(zero), class: cls.unwrap_or_else(zero) })
}

/// [`ssd_loss`] image by image: each image's [`ssd_1_loss`] (their sum is `ssd_loss`).
pub fn ssd_loss_per_image(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    n_objects: Option<&Tensor>,
    sz: f64,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<Vec<LossParts>> {
    let (b, a) = (out.class_logits.size()[0], out.class_logits.size()[1]);
    if a != anchors.len() as i64 || out.box_offsets.size()[1] != a {
        return Err(Error::Invalid(format!(
            "the SSD head makes {a} anchors per image but the anchors are {} (grids {:?}, k {}): is the input size the one the config is for? (SsdConfig::check)",
            anchors.len(),
            anchors.config.grids,
            anchors.config.k()
        )));
    }
    if out.class_logits.size()[2] != cfg.n_classes + 1 {
        return Err(Error::Invalid(format!(
            "the SSD head predicts {} classes, the config says {} + background",
            out.class_logits.size()[2],
            cfg.n_classes
        )));
    }
    if bbox.size().len() != 3 || bbox.size()[0] != b || class.size() != bbox.size()[..2] {
        return Err(Error::Invalid(format!(
            "SSD targets: expected bbox [{b}, N, 4] and class [{b}, N], found {:?} and {:?}",
            bbox.size(),
            class.size()
        )));
    }
    let n = bbox.size()[1];
    let counts = counts_of(n_objects)?;
    if let Some(c) = &counts {
        if c.len() as i64 != b || c.iter().any(|&k| k < 0 || k > n) {
            return Err(Error::Invalid(format!("SSD targets: n_objects {c:?} does not fit {b} images of {n} rows")));
        }
    }
    if class.numel() > 0 {
        let (lo, hi) = (i64::try_from(class.min())?, i64::try_from(class.max())?);
        if lo < 0 || hi >= cfg.n_classes {
            return Err(Error::Invalid(format!(
                "SSD targets: classes must be in 0..{}, found {lo}..={hi}",
                cfg.n_classes
            )));
        }
    }
    let anchors = if anchors.device() == out.class_logits.device() {
        anchors.clone()
    } else {
        anchors.to_device(out.class_logits.device())
    };
    (0..b)
        .map(|i| {
            let (bb, cl) = image_targets(bbox, class, counts.as_deref(), i, sz);
            let (lc, bo) = out.image(i);
            ssd_1_loss(&lc, &bo, &bb.to_kind(Kind::Float), &cl, &anchors, cfg)
        })
        .collect()
}

/// Image `i`'s objects from padded batch targets (see [`ssd_loss`]): boxes in 0..1 units and
/// classes, from `n_objects` when given, else the lesson's [`get_y`].
fn image_targets(bbox: &Tensor, class: &Tensor, counts: Option<&[i64]>, i: i64, sz: f64) -> (Tensor, Tensor) {
    let n = bbox.size()[1];
    match counts {
        Some(c) => {
            let k = c[i as usize];
            (bbox.get(i).narrow(0, n - k, k) / sz, class.get(i).narrow(0, n - k, k))
        }
        None => get_y(&bbox.get(i), &class.get(i), sz),
    }
}

fn counts_of(n_objects: Option<&Tensor>) -> Result<Option<Vec<i64>>> {
    Ok(match n_objects {
        Some(t) => Some(Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Int64).flatten(0, -1))?),
        None => None,
    })
}

/// Lesson 9's `ssd_loss(batch, y, print_it=True)`: [`ssd_loss`], printing for every image the
/// overlap of each object with its best anchor (`map_to_ground_truth`'s `print(prior_overlap)`),
/// then `loc: .., clas: ..`.
pub fn print_ssd_loss(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    n_objects: Option<&Tensor>,
    sz: f64,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<LossParts> {
    let parts = ssd_loss(out, bbox, class, n_objects, sz, anchors, cfg)?;
    let counts = counts_of(n_objects)?;
    let corners = anchors.corners.to_device(Device::Cpu);
    for i in 0..bbox.size()[0] {
        let (bb, _) = image_targets(bbox, class, counts.as_deref(), i, sz);
        let prior: Vec<f32> = if bb.size()[0] == 0 {
            vec![]
        } else {
            Vec::try_from(jaccard(&bb.to_device(Device::Cpu).to_kind(Kind::Float), &corners).amax(1, false))?
        };
        println!("[{}]", prior.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", "));
    }
    println!("loc: {:.5}, clas: {:.5}", f64::try_from(&parts.loc)?, f64::try_from(&parts.class)?);
    Ok(parts)
}

/// Lesson 9's "testing" walk-through of [`ssd_1_loss`] on one image: every value the lesson
/// prints on the way from the overlaps to the two losses ([`trace_ssd_1_loss`]).
#[derive(Debug, Clone)]
pub struct SsdTrace {
    /// IoU of each object (rows) with each anchor (columns): `jaccard(bbox, anchor_cnr)`.
    pub overlaps: Vec<Vec<f32>>,
    /// `overlaps.max(1)`: each object's best overlap and its anchor.
    pub prior_overlap: Vec<f32>,
    pub prior_idx: Vec<usize>,
    /// `overlaps.max(0)`: each anchor's best overlap and its object, before any forcing.
    pub anchor_overlap: Vec<f32>,
    pub anchor_idx: Vec<usize>,
    /// `map_to_ground_truth(overlaps)`: overlaps with best anchors forced to 1.99, and each
    /// anchor's object.
    pub gt_overlap: Vec<f32>,
    pub gt_idx: Vec<i64>,
    /// Each anchor's target class, `n_classes` (background) where `gt_overlap <= pos_iou`.
    pub gt_clas: Vec<usize>,
    /// Anchors with `gt_overlap > pos_iou`.
    pub pos_idx: Vec<usize>,
    /// The two parts of [`ssd_1_loss`] (with the config's class loss).
    pub loc: f64,
    pub class: f64,
    /// The lesson's testing cell computes `F.cross_entropy(b_clasi, gt_clas)` instead.
    pub cross_entropy: f64,
    pub n_classes: usize,
}

impl SsdTrace {
    /// `gt_clas` as the lesson prints it: class names, `bg` for background.
    pub fn class_names<'a>(&self, classes: &'a [String]) -> Vec<&'a str> {
        self.gt_clas.iter().map(|&c| classes.get(c).map(String::as_str).unwrap_or("bg")).collect()
    }
}

fn fmt_f32s(v: &[f32]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ")
}

impl std::fmt::Display for SsdTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "overlaps.max(1): objects' best anchors {:?}, overlaps {}",
            self.prior_idx,
            fmt_f32s(&self.prior_overlap)
        )?;
        writeln!(f, "overlaps.max(0): anchors' best objects {:?}", self.anchor_idx)?;
        writeln!(f, "                 overlaps {}", fmt_f32s(&self.anchor_overlap))?;
        writeln!(f, "map_to_ground_truth: gt_idx {:?}", self.gt_idx)?;
        writeln!(f, "                     gt_overlap {}", fmt_f32s(&self.gt_overlap))?;
        writeln!(f, "positive anchors {:?}", self.pos_idx)?;
        write!(f, "loc_loss {:.4}, clas_loss {:.4} (cross-entropy {:.4})", self.loc, self.class, self.cross_entropy)
    }
}

/// Lesson 9's testing walk-through for one image whose padding is removed (the arguments of
/// [`ssd_1_loss`]); anchors with overlap over `cfg.pos_iou` are positives (the lesson's testing
/// cell uses 0.5, its loss 0.4). Errors on an image without objects (there is nothing to match).
pub fn trace_ssd_1_loss(
    class_logits: &Tensor,
    box_offsets: &Tensor,
    bbox: &Tensor,
    clas: &Tensor,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<SsdTrace> {
    let n_gt = bbox.size()[0] as usize;
    let n_anc = anchors.len();
    if n_gt == 0 {
        return Err(Error::Invalid("trace_ssd_1_loss: the image has no objects to match".into()));
    }
    let corners = anchors.corners.to_device(Device::Cpu);
    let flat: Vec<f32> =
        Vec::try_from(jaccard(&bbox.detach().to_device(Device::Cpu).to_kind(Kind::Float), &corners).flatten(0, -1))?;
    let overlaps: Vec<Vec<f32>> = flat.chunks(n_anc).map(<[f32]>::to_vec).collect();
    // torch's max keeps the first of equal values
    let argmax = |v: &mut dyn Iterator<Item = f32>| {
        v.enumerate().fold((f32::NEG_INFINITY, 0), |b, (i, x)| if x > b.0 { (x, i) } else { b })
    };
    let (prior_overlap, prior_idx): (Vec<f32>, Vec<usize>) =
        overlaps.iter().map(|row| argmax(&mut row.iter().copied())).unzip();
    let (anchor_overlap, anchor_idx): (Vec<f32>, Vec<usize>) =
        (0..n_anc).map(|a| argmax(&mut overlaps.iter().map(|r| r[a]))).unzip();
    let (gt_overlap, gt_idx) = match_anchors(&flat, n_gt, n_anc, cfg.matching)?;
    let clas_v: Vec<i64> = Vec::try_from(clas.to_device(Device::Cpu).to_kind(Kind::Int64).flatten(0, -1))?;
    let c = cfg.n_classes as usize;
    let pos_idx: Vec<usize> = (0..n_anc).filter(|&a| gt_overlap[a] as f64 > cfg.pos_iou).collect();
    let gt_clas: Vec<usize> = (0..n_anc)
        .map(|a| if gt_overlap[a] as f64 > cfg.pos_iou { clas_v[gt_idx[a] as usize] as usize } else { c })
        .collect();
    let parts = ssd_1_loss(class_logits, box_offsets, bbox, clas, anchors, cfg)?;
    let target =
        Tensor::from_slice(&gt_clas.iter().map(|&v| v as i64).collect::<Vec<_>>()).to_device(class_logits.device());
    let cross_entropy = f64::try_from(class_logits.detach().to_kind(Kind::Float).cross_entropy_for_logits(&target))?;
    Ok(SsdTrace {
        overlaps,
        prior_overlap,
        prior_idx,
        anchor_overlap,
        anchor_idx,
        gt_overlap,
        gt_idx,
        gt_clas,
        pos_idx,
        loc: f64::try_from(&parts.loc)?,
        class: f64::try_from(&parts.class)?,
        cross_entropy,
        n_classes: c,
    })
}
