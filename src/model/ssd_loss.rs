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
/// anchor's overlap ([`FORCED_OVERLAP`] where forced) and ground-truth index. Ties go to the lower
/// index (as PyTorch's `max(dim)`); NaN overlaps count as -inf. This is [`match_batch`] on the
/// CPU for one image (one rule, one implementation).
pub fn match_anchors(overlaps: &[f32], n_gt: usize, n_anc: usize, matching: Matching) -> Result<(Vec<f32>, Vec<i64>)> {
    if overlaps.len() != n_gt * n_anc {
        return Err(Error::Invalid(format!(
            "match_anchors: {} overlaps for {n_gt} ground truths x {n_anc} anchors",
            overlaps.len()
        )));
    }
    let ov = Tensor::from_slice(overlaps).view([1, n_gt as i64, n_anc as i64]); // [1, n, A]
    let valid = Tensor::ones([1, n_gt as i64], (Kind::Bool, Device::Cpu)); // [1, n]
    let (o, i) = match_batch(&ov, &valid, matching);
    Ok((Vec::try_from(o.view([-1]))?, Vec::try_from(i.view([-1]))?))
}

/// Lesson 9's `map_to_ground_truth` for a whole batch, on the batch's device, with tensor
/// operations only (no host read: the forcing is a scatter-free `amax` over one-hot masks, as
/// torchvision's `Matcher` keeps its matching on the device).
///
/// `overlaps [B, N, A]` (IoU of each image's padded ground-truth rows with each anchor) and
/// `valid [B, N]` bool (the real rows) -> `(gt_overlap [B, A] float, gt_idx [B, A] int64)`, where
/// `gt_idx` is a row in `0..N`. Per image this is the matching of [`match_anchors`] on its real
/// rows in order: each anchor takes the row it overlaps most (ties: the first row; NaN counts
/// as -inf; overlaps below 0 become 0), then [`Matching`] forces anchors to [`FORCED_OVERLAP`].
/// Padding rows never win an anchor. An image without real rows gets overlap 0 and row 0
/// everywhere (the loss makes all its anchors background).
pub fn match_batch(overlaps: &Tensor, valid: &Tensor, matching: Matching) -> (Tensor, Tensor) {
    let (b, n, a) = match overlaps.size()[..] {
        [b, n, a] => (b, n, a),
        ref s => panic!("match_batch: overlaps {s:?}, expected [B, N, A]"),
    };
    let dev = overlaps.device();
    if n == 0 || a == 0 {
        return (Tensor::zeros([b, a], (Kind::Float, dev)), Tensor::zeros([b, a], (Kind::Int64, dev)));
    }
    let ov = overlaps.detach().to_kind(Kind::Float);
    let ov = ov.masked_fill(&ov.isnan(), f64::NEG_INFINITY); // [B, N, A], NaN -> -inf
    let valid = valid.to_kind(Kind::Bool);
    let valid3 = valid.unsqueeze(2); // [B, N, 1]
    let rows = Tensor::arange(n, (Kind::Int64, dev)).view([1, n, 1]); // [1, N, 1]
    let anchor_ids = Tensor::arange(a, (Kind::Int64, dev)); // [A]

    // Each anchor's best real row (the lesson's `overlaps.max(0)`); ties and all -inf go to the
    // first real row, as the host loop over an image's own rows.
    let ov_real = ov.masked_fill(&valid3.logical_not(), f64::NEG_INFINITY); // [B, N, A]
    let best = ov_real.amax(&[1i64][..], true); // [B, 1, A]
    let is_best = ov_real.eq_tensor(&best).logical_and(&valid3); // [B, N, A]
    let best_row = first_true(&is_best, 1); // [B, A]
    let gt_overlap = best.squeeze_dim(1).clamp_min(0.0); // [B, A]

    // The forced anchors and the row each is forced to (-1: not forced).
    let forced_row = match matching {
        Matching::Lesson => {
            // Each real row's best anchor (`overlaps.max(1)`, first on ties); an anchor that is
            // the best of several rows goes to the last of them (the lesson's loop overwrites).
            let prior = ov.argmax(2, true); // [B, N, 1]
            let is_prior = prior.eq_tensor(&anchor_ids.view([1, 1, a])).logical_and(&valid3); // [B, N, A]
            rows.expand([b, n, a], false).masked_fill(&is_prior.logical_not(), -1).amax(&[1i64][..], false)
            // [B, A]
        }
        Matching::NoGtLost => {
            // Rows by decreasing best IoU (stable: ties keep row order, which is the images'
            // object order), each taking its best anchor among those not yet forced. As
            // `f32::total_cmp`, 0.0 comes before -0.0: a stable sort on that first, then on the IoU.
            let best_iou = ov.amax(&[2i64][..], false); // [B, N]
            let neg_zero = best_iou.eq(0.0).logical_and(&best_iou.signbit()).to_kind(Kind::Uint8); // [B, N]
            let by_zero = neg_zero.sort_stable(true, 1, false).1; // [B, N]
            let by_iou = best_iou.gather(1, &by_zero, false).sort_stable(true, 1, true).1; // [B, N]
            let order = by_zero.gather(1, &by_iou, false); // [B, N]
            let mut taken = Tensor::zeros([b, a], (Kind::Bool, dev)); // [B, A]
            let mut forced_row = Tensor::full([b, a], -1i64, (Kind::Int64, dev)); // [B, A]
            for r in 0..n {
                let g = order.narrow(1, r, 1); // [B, 1]
                let row = ov.gather(1, &g.unsqueeze(2).expand([b, 1, a], false), false).squeeze_dim(1); // [B, A]
                let free = taken.logical_not();
                let m = row.masked_fill(&taken, f64::NEG_INFINITY).amax(&[1i64][..], true); // [B, 1]
                let cand = row.eq_tensor(&m).logical_and(&free); // [B, A]
                let has = cand.any_dim(1, true).logical_and(&valid.gather(1, &g, false)); // [B, 1]
                let pick = anchor_ids.unsqueeze(0).eq_tensor(&first_true(&cand, 1).unsqueeze(1)).logical_and(&has); // [B, A]
                taken = taken.logical_or(&pick);
                forced_row = forced_row.where_self(&pick.logical_not(), &g.expand([b, a], false));
            }
            forced_row
        }
    };
    let forced = forced_row.ge(0); // [B, A]
    (gt_overlap.masked_fill(&forced, FORCED_OVERLAP as f64), forced_row.where_self(&forced, &best_row))
}

/// The index of the first `true` along `dim` (0 where there is none): `argmax` returns the first
/// of equal maxima.
fn first_true(mask: &Tensor, dim: i64) -> Tensor {
    mask.to_kind(Kind::Uint8).argmax(dim, false)
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
/// are chosen, and [`match_batch`] for a whole batch.
pub fn map_to_ground_truth(overlaps: &Tensor, matching: Matching) -> Result<(Tensor, Tensor)> {
    let size = overlaps.size();
    if size.len() != 2 {
        return Err(Error::Shape {
            what: "map_to_ground_truth: overlaps".into(),
            expected: "[n_gt, A]".into(),
            found: size,
        });
    }
    let valid = Tensor::ones([1, size[0]], (Kind::Bool, overlaps.device())); // [1, n_gt]
    let (o, i) = match_batch(&overlaps.unsqueeze(0), &valid, matching);
    Ok((o.squeeze_dim(0), i.squeeze_dim(0)))
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
    class_loss_terms(logits, &gt_clas.one_hot(c + 1), loss).sum(Kind::Float) / c as f64
}

/// The (weighted) BCE terms of [`class_loss`] before the sum: `logits [.., A, C+1]` and one-hot
/// targets `[.., A, C+1]` -> `[.., A, C]` (background column dropped).
fn class_loss_terms(logits: &Tensor, one_hot: &Tensor, loss: ClassLoss) -> Tensor {
    let c = logits.size()[logits.dim() - 1] - 1;
    let t = one_hot.to_kind(logits.kind()).narrow(-1, 0, c); // [.., A, C]
    let x = logits.narrow(-1, 0, c); // [.., A, C]
    let l = bce_with_logits(&x, &t); // [.., A, C]
    match loss {
        ClassLoss::Bce => l,
        ClassLoss::Focal { alpha, gamma } => {
            let p = x.sigmoid();
            let (one_m_p, one_m_t): (Tensor, Tensor) = (1.0 - &p, 1.0 - &t);
            let pt: Tensor = &p * &t + one_m_p * &one_m_t;
            let w: Tensor = &t * alpha + one_m_t * (1.0 - alpha);
            let one_m_pt: Tensor = 1.0 - pt;
            l * (w * one_m_pt.pow_tensor_scalar(gamma))
        }
    }
}

/// Lesson 9's `ssd_1_loss` for one image whose padding is already removed: `class_logits [A,
/// C+1]`, `box_offsets [A, 4]`, ground truth `bbox [n, 4]` in 0..1 corners and `clas [n]`.
/// Anchors matched with overlap > `pos_iou` are positives; the others are background (`C`).
/// `loc` = mean |box - ground truth| over the positives (0 when there are none); `class` =
/// [`class_loss`]. An image with no objects has only background anchors. (The batch's loss of
/// one image: [`ssd_loss`] computes every image at once.)
pub fn ssd_1_loss(
    class_logits: &Tensor,
    box_offsets: &Tensor,
    bbox: &Tensor,
    clas: &Tensor,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<LossParts> {
    let valid = Tensor::ones([1, bbox.size()[0]], (Kind::Bool, bbox.device())); // [1, n]
    let out = SsdOutput { class_logits: class_logits.unsqueeze(0), box_offsets: box_offsets.unsqueeze(0) };
    let (loc, class) = batch_loss(&out, &bbox.unsqueeze(0), &clas.unsqueeze(0), &valid, anchors, cfg)?;
    Ok(LossParts { loc: loc.squeeze_dim(0), class: class.squeeze_dim(0) })
}

/// Every image's `(loc [B], class [B])` of [`ssd_1_loss`], at once and on the batch's device:
/// `bbox [B, N, 4]` in 0..1 corners, `class [B, N]`, `valid [B, N]` the real rows. Tensor
/// operations only: no host read, no shape that depends on the data (on CUDA nothing waits for
/// the GPU). A class out of range is an error from `one_hot` on the CPU and a device-side assert
/// on CUDA: the loader checks classes where it makes the batch ([`crate::data::collate`]).
fn batch_loss(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    valid: &Tensor,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<(Tensor, Tensor)> {
    let (b, a) = (out.class_logits.size()[0], anchors.len() as i64);
    let dev = out.class_logits.device();
    // With no rows at all, one padding row: every anchor is background.
    let (bbox, class, valid) = if bbox.size()[1] == 0 {
        (
            Tensor::zeros([b, 1, 4], (Kind::Float, dev)),
            Tensor::zeros([b, 1], (Kind::Int64, dev)),
            Tensor::zeros([b, 1], (Kind::Bool, dev)),
        )
    } else {
        (bbox.to_kind(Kind::Float), class.to_kind(Kind::Int64), valid.to_kind(Kind::Bool))
    };
    let n = bbox.size()[1];
    let overlaps = jaccard(&bbox.detach().view([b * n, 4]), &anchors.corners).view([b, n, a]); // [B, N, A]
    let (gt_overlap, gt_row) = match_batch(&overlaps, &valid, cfg.matching); // [B, A], [B, A]
                                                                             // In f64 as the lesson's `gt_overlap > pos_iou`: an overlap of exactly 0.4f32 is above 0.4.
    let pos = gt_overlap.to_kind(Kind::Double).gt(cfg.pos_iou).logical_and(&valid.any_dim(1, true)); // [B, A]
    let gt_clas = class.gather(1, &gt_row, false).masked_fill(&pos.logical_not(), cfg.n_classes); // [B, A]
    let gt_bbox = bbox.gather(1, &gt_row.unsqueeze(2).expand([b, a, 4], false), false); // [B, A, 4]
    let a_ic = actn_to_bb(&out.box_offsets, anchors); // [B, A, 4]
    let pos = pos.to_kind(Kind::Float);
    let n_pos = pos.sum_dim_intlist(&[1i64][..], false, Kind::Float); // [B]
    let l1 = ((a_ic - gt_bbox).abs() * pos.unsqueeze(2)).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float); // [B]
    let loc = l1 / (n_pos * 4.0).clamp_min(1.0); // [B]: the mean over the positives' 4 coordinates, 0 without any
    let c = cfg.n_classes;
    let terms = class_loss_terms(&out.class_logits, &gt_clas.f_one_hot(c + 1)?, cfg.class_loss); // [B, A, C]
    let class = terms.sum_dim_intlist(&[1i64, 2][..], false, Kind::Float) / c as f64; // [B]
    Ok((loc, class))
}

/// Lesson 9's `ssd_loss`: the sum over the batch's images of [`ssd_1_loss`], all images matched
/// and scored at once on the batch's device ([`match_batch`]; no host read).
///
/// `bbox [B, N, 4]` are pixel boxes `(top, left, bottom, right)` of `sz x sz` images and `class
/// [B, N]`, with zero rows in front as padding. With `n_objects [B]` (the loader's
/// [`crate::data::BatchTarget::Boxes`]) the last `n_objects[i]` rows of image `i` are its
/// objects; with `None` padding is removed as the lesson's [`get_y`] does (rows with `bottom -
/// top <= 0` dropped). Errors when the output's anchors or classes do not fit `anchors`/`cfg`;
/// classes must be in `0..C` (the loader checks them).
pub fn ssd_loss(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    n_objects: Option<&Tensor>,
    sz: f64,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<LossParts> {
    let (loc, class) = ssd_loss_images(out, bbox, class, n_objects, sz, anchors, cfg)?;
    Ok(LossParts { loc: loc.sum(Kind::Float), class: class.sum(Kind::Float) })
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
    let (loc, class) = ssd_loss_images(out, bbox, class, n_objects, sz, anchors, cfg)?;
    Ok((0..loc.size()[0]).map(|i| LossParts { loc: loc.get(i), class: class.get(i) }).collect())
}

/// Each image's `(loc [B], class [B])` for [`ssd_loss`], after the checks of shapes (sizes only,
/// nothing read from the device).
fn ssd_loss_images(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    n_objects: Option<&Tensor>,
    sz: f64,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<(Tensor, Tensor)> {
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
    if n_objects.is_some_and(|t| t.size() != [b]) {
        return Err(Error::Invalid(format!(
            "SSD targets: n_objects {:?} for {b} images",
            n_objects.map(Tensor::size).unwrap_or_default()
        )));
    }
    let dev = out.class_logits.device();
    let anchors = if anchors.device() == dev { anchors.clone() } else { anchors.to_device(dev) };
    let bbox = bbox.to_device(dev).to_kind(Kind::Float) / sz; // [B, N, 4] in 0..1
    let valid = real_rows(&bbox, n_objects.map(|t| t.to_device(dev)).as_ref()); // [B, N]
    batch_loss(out, &bbox, &class.to_device(dev), &valid, &anchors, cfg)
}

/// Which rows of padded batch targets are objects (see [`ssd_loss`]): `[B, N]` bool, from
/// `n_objects` when given (the last `n_objects[i]` rows), else the lesson's [`get_y`] rule.
fn real_rows(bbox: &Tensor, n_objects: Option<&Tensor>) -> Tensor {
    let n = bbox.size()[1];
    match n_objects {
        Some(k) => {
            let rows = Tensor::arange(n, (Kind::Int64, bbox.device())).unsqueeze(0); // [1, N]
            rows.ge_tensor(&(-k.to_kind(Kind::Int64) + n).unsqueeze(1)) // [B, N]
        }
        None => (bbox.select(2, 2) - bbox.select(2, 0)).gt(0.0), // [B, N]
    }
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
