//! Mean average precision of detections against a [`Dataset`]: Pascal VOC 2007 11-point AP,
//! VOC2010+ area AP (both with `voc_eval.py`'s conventions) and COCO AP@[.5:.95] with
//! pycocotools' algorithm. Beyond the lesson, which computes no mAP (LESSON.md section 5).
//!
//! # VOC (`ApMetric::Voc07`, `ApMetric::Voc`): `voc_eval.py`, line by line
//! - per class, detections sorted by score descending — **stable** (input order breaks ties;
//!   `voc_eval.py`'s `np.argsort(-confidence)` is an unstable quicksort, so its tie order is
//!   unspecified), NaN scores last;
//! - each detection is compared with every ground truth of its class in its image, in VOC's
//!   one-based inclusive coordinates with **`+1` pixel areas**
//!   (`(x2 - x1 + 1) * (y2 - y1 + 1)`, in `f64`); the best overlap (first on ties) counts when
//!   `ovmax > 0.5` **strictly**: a *difficult* best match is neither TP nor FP, a best match
//!   already taken is a FP (duplicate), otherwise a TP; below the threshold a FP;
//! - recall = `tp / npos` (npos = non-difficult objects), precision = `tp / max(tp + fp, eps)`;
//!   VOC07: the mean over `t = 0, 0.1, .., 1.0` (`i * 0.1` as `np.arange` makes them) of the
//!   best precision at recall `>= t`; VOC2010+: the area under the monotone precision envelope.
//!
//! # COCO (`ApMetric::Coco`): pycocotools' `COCOeval` (bbox, area "all", maxDets 100)
//! - IoU in `f64` on `[x, y, w, h]` boxes without `+1` (`bbIou` of `maskUtils`);
//! - **difficult objects are COCO crowds** (`iscrowd = 1`): ignored, matched by IoU
//!   `inter / det_area`, and able to absorb any number of detections. (pycocotools overwrites a
//!   JSON `ignore` flag with `iscrowd`, so `iscrowd` is the only way to make it ignore an
//!   object; tests/golden/gen_map.py writes the ground truth that way.) With no difficult
//!   objects this is plain COCO;
//! - per image and class: detections by score (stable), the first 100; greedy matching at each
//!   of the 10 IoU thresholds `0.5 .. 0.95` (`np.linspace`), a match needs `IoU >= t`;
//! - per class, all images' detections by score (stable, images by ascending id); precision
//!   made monotone, read at the 101 recall points `0, 0.01, .., 1` (`searchsorted`, left);
//!   AP of a class = the mean over thresholds and recall points; AP50 and AP75 at 0.5 / 0.75.
//!
//! # Classes without ground truth
//! A class with no non-difficult object in the dataset has **no AP** (`None`, shown as `-`)
//! and is left out of the mean, as COCO does (`-1`); `voc_eval.py` would divide by zero there.
//! The mAP is the mean over classes that have an AP; 0 when none has.
//!
//! Boxes are [`BBox`] (`top, left, bottom, right`, zero-based inclusive) everywhere;
//! [`BBox::to_voc`] and [`BBox::to_xywh`] give the two formats above.

use crate::boxes::{coco_iou, voc_iou, BBox};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::nms::ScoredBox;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// One detection in one image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// [`crate::data::ImageRecord::id`] of the image.
    pub image_id: u64,
    /// Class index into [`Dataset::classes`] (no background).
    pub class: usize,
    pub bbox: BBox,
    pub score: f32,
}

impl Detection {
    /// A [`ScoredBox`] of one image, placed in the image `image_id`.
    pub fn new(image_id: u64, d: ScoredBox) -> Self {
        Self { image_id, class: d.class, bbox: d.bbox, score: d.score }
    }
}

/// Which average precision (`--metric` of `fastdet eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ApMetric {
    /// Pascal VOC 2007: 11-point interpolated AP at IoU > 0.5 (difficult objects ignored).
    Voc07,
    /// Pascal VOC 2010 and later: area under the precision envelope at IoU > 0.5.
    Voc,
    /// COCO AP@[.5:.95] (pycocotools: 101 recall points, 100 detections per image; difficult
    /// objects as crowds).
    Coco,
}

impl ApMetric {
    pub fn name(&self) -> &'static str {
        match self {
            ApMetric::Voc07 => "voc07",
            ApMetric::Voc => "voc",
            ApMetric::Coco => "coco",
        }
    }
}

impl std::str::FromStr for ApMetric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "voc07" | "voc2007" | "11point" => Ok(ApMetric::Voc07),
            "voc" | "voc2010" | "area" => Ok(ApMetric::Voc),
            "coco" => Ok(ApMetric::Coco),
            _ => Err(Error::Invalid(format!("unknown metric {s:?}: expected voc07, voc or coco"))),
        }
    }
}

impl fmt::Display for ApMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The AP of one class.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassAp {
    pub class: usize,
    pub name: String,
    /// Non-difficult ground-truth objects.
    pub n_gt: usize,
    /// Detections of this class.
    pub n_det: usize,
    /// `None` when the class has no non-difficult object (left out of the mean).
    pub ap: Option<f64>,
    /// COCO only: AP at IoU 0.5 and 0.75.
    pub ap50: Option<f64>,
    pub ap75: Option<f64>,
    /// The precision-recall curve: VOC, the raw curve (one point per detection); COCO, the
    /// interpolated precision at the 101 recall points at IoU 0.5.
    #[serde(skip)]
    pub recall: Vec<f64>,
    #[serde(skip)]
    pub precision: Vec<f64>,
}

/// Per-class AP and the mean: printed as a table, shown as an HTML table in a notebook.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApTable {
    pub metric: ApMetric,
    /// Mean AP over classes that have one.
    pub map: f64,
    /// COCO only: mean AP at IoU 0.5 and 0.75.
    pub map50: Option<f64>,
    pub map75: Option<f64>,
    pub classes: Vec<ClassAp>,
}

impl serde::Serialize for ApMetric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

pub(crate) fn fmt_ap(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.4}", v))
}

impl fmt::Display for ApTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let coco = self.metric == ApMetric::Coco;
        write!(f, "{:<14} {:>6} {:>7} {:>8}", "class", "gt", "dets", "AP")?;
        if coco {
            write!(f, " {:>8} {:>8}", "AP50", "AP75")?;
        }
        writeln!(f)?;
        for c in &self.classes {
            write!(f, "{:<14} {:>6} {:>7} {:>8}", c.name, c.n_gt, c.n_det, fmt_ap(c.ap))?;
            if coco {
                write!(f, " {:>8} {:>8}", fmt_ap(c.ap50), fmt_ap(c.ap75))?;
            }
            writeln!(f)?;
        }
        write!(f, "mAP ({}) = {:.4}", self.metric, self.map)?;
        if let (Some(a), Some(b)) = (self.map50, self.map75) {
            write!(f, "  (AP50 {a:.4}, AP75 {b:.4})")?;
        }
        Ok(())
    }
}

/// Check every detection's image id and class against the dataset; the image index of each.
fn image_indices(ds: &Dataset, dets: &[Detection]) -> Result<Vec<usize>> {
    let index: HashMap<u64, usize> = ds.images.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    dets.iter()
        .enumerate()
        .map(|(k, d)| {
            let bad =
                |problem: String| Error::Annotation { path: ds.source.clone(), image: d.image_id.to_string(), problem };
            let i = *index
                .get(&d.image_id)
                .ok_or_else(|| bad(format!("detection {k}: image_id {} is not in the ground truth", d.image_id)))?;
            if d.class >= ds.classes.len() {
                return Err(bad(format!(
                    "detection {k}: class {} is not one of the {} classes",
                    d.class,
                    ds.classes.len()
                )));
            }
            if let Some(problem) = box_problem(d.bbox.to_xywh()) {
                return Err(bad(format!("detection {k}: {problem}")));
            }
            Ok(i)
        })
        .collect()
}

/// What is wrong with a detection's `[x, y, w, h]` box, if anything: a negative width or
/// height (or a coordinate that is not a number) would otherwise be scored, with a negative area.
fn box_problem(b: [f32; 4]) -> Option<String> {
    if !b.iter().all(|v| v.is_finite()) {
        Some(format!("bbox {b:?} has a coordinate that is not a finite number"))
    } else if b[2] < 0.0 {
        Some(format!("bbox {b:?} has a negative width {}", b[2]))
    } else if b[3] < 0.0 {
        Some(format!("bbox {b:?} has a negative height {}", b[3]))
    } else {
        None
    }
}

/// Mean average precision of `dets` on the ground truth of `ds` (see the module docs).
/// An error names the first detection whose image id or class the dataset does not have, or
/// whose box has a negative width or height.
pub fn evaluate(ds: &Dataset, dets: &[Detection], metric: ApMetric) -> Result<ApTable> {
    let img = image_indices(ds, dets)?;
    let nc = ds.classes.len();
    let mut classes = Vec::with_capacity(nc);
    // Detections of each class, in input order.
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); nc];
    for (k, d) in dets.iter().enumerate() {
        by_class[d.class].push(k);
    }
    for (c, class_dets) in by_class.iter().enumerate() {
        let n_gt = ds.images.iter().flat_map(|r| &r.objects).filter(|o| o.class == c && !o.difficult).count();
        let mut ca = ClassAp {
            class: c,
            name: ds.classes[c].clone(),
            n_gt,
            n_det: class_dets.len(),
            ap: None,
            ap50: None,
            ap75: None,
            recall: Vec::new(),
            precision: Vec::new(),
        };
        match metric {
            ApMetric::Voc07 | ApMetric::Voc => {
                voc_class(ds, dets, &img, class_dets, c, metric == ApMetric::Voc07, &mut ca)
            }
            ApMetric::Coco => coco_class(ds, dets, &img, class_dets, c, &mut ca),
        }
        classes.push(ca);
    }
    let mean = |f: &dyn Fn(&ClassAp) -> Option<f64>| {
        let v: Vec<f64> = classes.iter().filter_map(f).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let map = mean(&|c| c.ap);
    let (map50, map75) =
        if metric == ApMetric::Coco { (Some(mean(&|c| c.ap50)), Some(mean(&|c| c.ap75))) } else { (None, None) };
    Ok(ApTable { metric, map, map50, map75, classes })
}

/// Sort detection indices by score descending, stable, NaN last.
fn by_score(dets: &[Detection], idx: &[usize]) -> Vec<usize> {
    let scores: Vec<f32> = idx.iter().map(|&k| dets[k].score).collect();
    crate::nms::score_order(&scores).into_iter().map(|p| idx[p]).collect()
}

// ------------------------------------------------------------------------------------------
// VOC
// ------------------------------------------------------------------------------------------

/// `voc_eval.py`'s `voc_ap(rec, prec, use_07_metric)`.
pub fn voc_ap(rec: &[f64], prec: &[f64], use_07_metric: bool) -> f64 {
    if use_07_metric {
        let mut ap = 0.0;
        for i in 0..11 {
            let t = i as f64 * 0.1;
            let p = rec.iter().zip(prec).filter(|(&r, _)| r >= t).map(|(_, &p)| p).fold(f64::NEG_INFINITY, f64::max);
            ap += if p == f64::NEG_INFINITY { 0.0 } else { p } / 11.0;
        }
        ap
    } else {
        let mut mrec = Vec::with_capacity(rec.len() + 2);
        mrec.push(0.0);
        mrec.extend_from_slice(rec);
        mrec.push(1.0);
        let mut mpre = Vec::with_capacity(prec.len() + 2);
        mpre.push(0.0);
        mpre.extend_from_slice(prec);
        mpre.push(0.0);
        for i in (1..mpre.len()).rev() {
            mpre[i - 1] = mpre[i - 1].max(mpre[i]);
        }
        (0..mrec.len() - 1).filter(|&i| mrec[i + 1] != mrec[i]).map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum()
    }
}

fn voc_class(ds: &Dataset, dets: &[Detection], img: &[usize], idx: &[usize], c: usize, use07: bool, out: &mut ClassAp) {
    // Ground truth of this class per image: VOC corners (one-based) as f64, difficult, taken.
    let gts: Vec<Vec<([f64; 4], bool)>> = ds
        .images
        .iter()
        .map(|r| {
            r.objects
                .iter()
                .filter(|o| o.class == c)
                .map(|o| (o.bbox.to_voc().map(|v| v as f64), o.difficult))
                .collect()
        })
        .collect();
    let mut taken: Vec<Vec<bool>> = gts.iter().map(|g| vec![false; g.len()]).collect();
    let npos = out.n_gt;
    let order = by_score(dets, idx);
    let (mut tp, mut fp) = (Vec::with_capacity(order.len()), Vec::with_capacity(order.len()));
    for &k in &order {
        let i = img[k];
        let bb = dets[k].bbox.to_voc().map(|v| v as f64);
        let mut ovmax = f64::NEG_INFINITY;
        let mut jmax = 0;
        for (j, (g, _)) in gts[i].iter().enumerate() {
            let ov = voc_iou(&bb, g);
            // np.max / np.argmax: the first maximum (a NaN overlap would win in numpy; it
            // cannot occur for ground truth of positive size).
            if ov > ovmax {
                ovmax = ov;
                jmax = j;
            }
        }
        let (t, f) = if ovmax > 0.5 {
            if gts[i][jmax].1 {
                (0.0, 0.0)
            } else if !taken[i][jmax] {
                taken[i][jmax] = true;
                (1.0, 0.0)
            } else {
                (0.0, 1.0)
            }
        } else {
            (0.0, 1.0)
        };
        tp.push(t);
        fp.push(f);
    }
    if npos == 0 {
        return;
    }
    let (mut ctp, mut cfp) = (0.0, 0.0);
    let mut rec = Vec::with_capacity(tp.len());
    let mut prec = Vec::with_capacity(tp.len());
    for (t, f) in tp.iter().zip(&fp) {
        ctp += t;
        cfp += f;
        rec.push(ctp / npos as f64);
        prec.push(ctp / f64::max(ctp + cfp, f64::EPSILON));
    }
    out.ap = Some(voc_ap(&rec, &prec, use07));
    out.recall = rec;
    out.precision = prec;
}

// ------------------------------------------------------------------------------------------
// COCO
// ------------------------------------------------------------------------------------------

const MAX_DETS: usize = 100;
const N_IOU: usize = 10;
const N_REC: usize = 101;

/// pycocotools' `iouThrs`: `np.linspace(.5, 0.95, 10)`.
pub fn coco_iou_thresholds() -> [f64; N_IOU] {
    let step = (0.95f64 - 0.5) / 9.0;
    let mut t = [0.0; N_IOU];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f64 * step + 0.5;
    }
    t[N_IOU - 1] = 0.95;
    t
}

/// pycocotools' `recThrs`: `np.linspace(0, 1, 101)`.
pub fn coco_recall_thresholds() -> [f64; N_REC] {
    let step = 1.0f64 / 100.0;
    let mut r = [0.0; N_REC];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i as f64 * step + 0.0;
    }
    r[N_REC - 1] = 1.0;
    r
}

fn xywh64(b: &BBox) -> [f64; 4] {
    b.to_xywh().map(|v| v as f64)
}

/// pycocotools' `areaRng` (`[0, 1e5^2]`, `[0, 32^2]`, `[32^2, 96^2]`, `[96^2, 1e5^2]`): an
/// object is outside a range when its area is below the low end or above the high end.
pub const COCO_AREA_ALL: [f64; 2] = [0.0, 1e10];
pub const COCO_AREA_SMALL: [f64; 2] = [0.0, 1024.0];
pub const COCO_AREA_MEDIUM: [f64; 2] = [1024.0, 9216.0];
pub const COCO_AREA_LARGE: [f64; 2] = [9216.0, 1e10];

/// One class evaluated as pycocotools' `evaluateImg` + `accumulate` at one area range and
/// maximum of detections per image.
struct CocoClassEval {
    /// AP at each IoU threshold (the mean of the 101 interpolated precisions).
    ap: [f64; N_IOU],
    /// Recall at each IoU threshold with every detection (pycocotools' `recall`).
    recall: [f64; N_IOU],
    /// The interpolated precision at the 101 recall points at IoU 0.5.
    q0: [f64; N_REC],
}

fn coco_class(ds: &Dataset, dets: &[Detection], img: &[usize], idx: &[usize], c: usize, out: &mut ClassAp) {
    let Some(e) = coco_class_eval(ds, dets, img, idx, c, COCO_AREA_ALL, MAX_DETS) else { return };
    out.recall = coco_recall_thresholds().to_vec();
    out.precision = e.q0.to_vec();
    out.ap = Some(e.ap.iter().sum::<f64>() / N_IOU as f64);
    out.ap50 = Some(e.ap[0]);
    out.ap75 = Some(e.ap[5]);
}

/// `None` when the class has no object that counts in `area` (pycocotools' `-1`).
fn coco_class_eval(
    ds: &Dataset,
    dets: &[Detection],
    img: &[usize],
    idx: &[usize],
    c: usize,
    area: [f64; 2],
    max_dets: usize,
) -> Option<CocoClassEval> {
    let outside = |a: f64| a < area[0] || a > area[1];
    let thr = coco_iou_thresholds();
    let rec_thr = coco_recall_thresholds();
    // Detections of this class per image, in input order.
    let mut per_image: HashMap<usize, Vec<usize>> = HashMap::new();
    for &k in idx {
        per_image.entry(img[k]).or_default().push(k);
    }
    // Images by ascending id (pycocotools' sorted imgIds).
    let mut images: Vec<usize> = (0..ds.images.len()).collect();
    images.sort_by_key(|&i| ds.images[i].id);
    let mut scores: Vec<f32> = Vec::new();
    // Per threshold: matched / ignored flags of the concatenated detections.
    let mut matched: Vec<Vec<bool>> = vec![Vec::new(); N_IOU];
    let mut ignored: Vec<Vec<bool>> = vec![Vec::new(); N_IOU];
    let mut npig = 0usize;
    let empty = Vec::new();
    for &i in &images {
        let dk = per_image.get(&i).unwrap_or(&empty);
        let objs: Vec<&crate::data::Object> = ds.images[i].objects.iter().filter(|o| o.class == c).collect();
        if objs.is_empty() && dk.is_empty() {
            continue;
        }
        // Ground truth: ignored when a crowd (difficult) or outside the area range; ignored last.
        let mut gt: Vec<([f64; 4], bool)> = objs
            .iter()
            .map(|o| {
                let b = xywh64(&o.bbox);
                (b, o.difficult || outside(b[2] * b[3]))
            })
            .collect();
        let crowd_of: Vec<bool> = objs.iter().map(|o| o.difficult).collect();
        let mut gorder: Vec<usize> = (0..gt.len()).collect();
        gorder.sort_by_key(|&g| gt[g].1);
        let crowd: Vec<bool> = gorder.iter().map(|&g| crowd_of[g]).collect();
        gt = gorder.iter().map(|&g| gt[g]).collect();
        npig += gt.iter().filter(|g| !g.1).count();
        let mut dorder = by_score(dets, dk);
        dorder.truncate(max_dets);
        let db: Vec<[f64; 4]> = dorder.iter().map(|&k| xywh64(&dets[k].bbox)).collect();
        let ious: Vec<Vec<f64>> =
            db.iter().map(|d| gt.iter().zip(&crowd).map(|(g, &cr)| coco_iou(d, &g.0, cr)).collect()).collect();
        for (t, &th) in thr.iter().enumerate() {
            let mut gtm = vec![false; gt.len()];
            for (di, d) in db.iter().enumerate() {
                let mut iou = th.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for g in 0..gt.len() {
                    if gtm[g] && !crowd[g] {
                        continue;
                    }
                    if let Some(mm) = m {
                        if !gt[mm].1 && gt[g].1 {
                            break;
                        }
                    }
                    if ious[di][g] < iou {
                        continue;
                    }
                    iou = ious[di][g];
                    m = Some(g);
                }
                match m {
                    Some(g) => {
                        gtm[g] = true;
                        matched[t].push(true);
                        ignored[t].push(gt[g].1);
                    }
                    None => {
                        matched[t].push(false);
                        ignored[t].push(outside(d[2] * d[3]));
                    }
                }
            }
        }
        scores.extend(dorder.iter().map(|&k| dets[k].score));
    }
    if npig == 0 {
        return None;
    }
    let order = crate::nms::score_order(&scores);
    let nd = order.len();
    let mut e = CocoClassEval { ap: [0.0; N_IOU], recall: [0.0; N_IOU], q0: [0.0; N_REC] };
    for t in 0..N_IOU {
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        let mut rc = Vec::with_capacity(nd);
        let mut pr = Vec::with_capacity(nd);
        for &k in &order {
            if !ignored[t][k] {
                if matched[t][k] {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
            }
            rc.push(tp / npig as f64);
            pr.push(tp / (fp + tp + f64::EPSILON));
        }
        e.recall[t] = rc.last().copied().unwrap_or(0.0);
        for i in (1..nd).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        let mut q = [0.0f64; N_REC];
        for (ri, &r) in rec_thr.iter().enumerate() {
            let p = rc.partition_point(|&x| x < r);
            if p >= nd {
                break;
            }
            q[ri] = pr[p];
        }
        e.ap[t] = q.iter().sum::<f64>() / N_REC as f64;
        if t == 0 {
            e.q0 = q;
        }
    }
    Some(e)
}

/// pycocotools' `COCOeval.summarize()` for boxes, the numbers of its printout: AP@[.5:.95], AP50,
/// AP75 and AP by object size (maxDets 100), and the average recall AR@1, AR@10 and AR@100 (area
/// all). `None` where no class has an object that counts (pycocotools prints `-1`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CocoSummary {
    pub ap: Option<f64>,
    pub ap50: Option<f64>,
    pub ap75: Option<f64>,
    /// Objects of area below 32^2 pixels, between 32^2 and 96^2, above 96^2.
    pub ap_small: Option<f64>,
    pub ap_medium: Option<f64>,
    pub ap_large: Option<f64>,
    /// Recall averaged over the IoU thresholds and classes with at most 1, 10, 100 detections
    /// per image and class.
    pub ar1: Option<f64>,
    pub ar10: Option<f64>,
    pub ar100: Option<f64>,
}

impl CocoSummary {
    /// The numbers with pycocotools' names, in its order.
    pub fn rows(&self) -> [(&'static str, Option<f64>); 9] {
        [
            ("AP@[.5:.95]", self.ap),
            ("AP50", self.ap50),
            ("AP75", self.ap75),
            ("AP small", self.ap_small),
            ("AP medium", self.ap_medium),
            ("AP large", self.ap_large),
            ("AR@1", self.ar1),
            ("AR@10", self.ar10),
            ("AR@100", self.ar100),
        ]
    }
}

impl fmt::Display for CocoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<String> = self.rows().iter().map(|(n, v)| format!("{n} {}", fmt_ap(*v))).collect();
        f.write_str(&rows.join(", "))
    }
}

/// [`CocoSummary`] of `dets` on `ds` (the COCO rules of [`evaluate`]: difficult objects are
/// crowds). An error names the first detection [`evaluate`] would reject.
pub fn coco_summary(ds: &Dataset, dets: &[Detection]) -> Result<CocoSummary> {
    let img = image_indices(ds, dets)?;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ds.classes.len()];
    for (k, d) in dets.iter().enumerate() {
        by_class[d.class].push(k);
    }
    let mean_of = |area: [f64; 2], max_dets: usize, f: &dyn Fn(&CocoClassEval) -> f64| {
        let v: Vec<f64> = by_class
            .iter()
            .enumerate()
            .filter_map(|(c, idx)| coco_class_eval(ds, dets, &img, idx, c, area, max_dets).map(|e| f(&e)))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let all: Vec<CocoClassEval> = by_class
        .iter()
        .enumerate()
        .filter_map(|(c, idx)| coco_class_eval(ds, dets, &img, idx, c, COCO_AREA_ALL, MAX_DETS))
        .collect();
    let over_all = |f: &dyn Fn(&CocoClassEval) -> f64| {
        (!all.is_empty()).then(|| all.iter().map(f).sum::<f64>() / all.len() as f64)
    };
    let mean_ap = |e: &CocoClassEval| e.ap.iter().sum::<f64>() / N_IOU as f64;
    let mean_ar = |e: &CocoClassEval| e.recall.iter().sum::<f64>() / N_IOU as f64;
    Ok(CocoSummary {
        ap: over_all(&mean_ap),
        ap50: over_all(&|e| e.ap[0]),
        ap75: over_all(&|e| e.ap[5]),
        ap_small: mean_of(COCO_AREA_SMALL, MAX_DETS, &mean_ap),
        ap_medium: mean_of(COCO_AREA_MEDIUM, MAX_DETS, &mean_ap),
        ap_large: mean_of(COCO_AREA_LARGE, MAX_DETS, &mean_ap),
        ar1: mean_of(COCO_AREA_ALL, 1, &mean_ar),
        ar10: mean_of(COCO_AREA_ALL, 10, &mean_ar),
        ar100: over_all(&mean_ar),
    })
}

// ------------------------------------------------------------------------------------------
// COCO results files
// ------------------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct CocoResult {
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
    score: f32,
}

/// Read detections in the COCO results format (a JSON list of
/// `{image_id, category_id, bbox: [x, y, w, h], score}`), with the dataset's category ids
/// ([`Dataset::category_id`]: class index + 1, or a COCO source's own ids); boxes through [`BBox::from_xywh`]. An unknown `image_id` or
/// `category_id`, or a box with a negative width or height, is an error naming the file and the
/// entry.
pub fn load_coco_results(path: impl AsRef<Path>, ds: &Dataset) -> Result<Vec<Detection>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let res: Vec<CocoResult> = serde_json::from_str(&text).map_err(|e| Error::json(path, e))?;
    let ids: std::collections::HashSet<u64> = ds.images.iter().map(|r| r.id).collect();
    res.into_iter()
        .enumerate()
        .map(|(k, r)| {
            let bad = |problem: String| Error::Annotation { path: path.into(), image: r.image_id.to_string(), problem };
            if !ids.contains(&r.image_id) {
                return Err(bad(format!("entry {k}: image_id {} is not in {}", r.image_id, ds.source.display())));
            }
            let Some(class) = ds.class_of_category(r.category_id) else {
                return Err(bad(format!(
                    "entry {k}: unknown category_id {} (the dataset's are {})",
                    r.category_id,
                    ds.category_ids_described()
                )));
            };
            if let Some(problem) = box_problem(r.bbox) {
                return Err(bad(format!("entry {k}: {problem}")));
            }
            Ok(Detection { image_id: r.image_id, class, bbox: BBox::from_xywh(r.bbox), score: r.score })
        })
        .collect()
}

/// Write detections of images of `ds` in the COCO results format, with `ds`'s category ids
/// ([`Dataset::category_id`]), so that `load_coco_results` and pycocotools read them back.
pub fn save_coco_results(path: impl AsRef<Path>, dets: &[Detection], ds: &Dataset) -> Result<()> {
    let path = path.as_ref();
    let v: Vec<serde_json::Value> = dets
        .iter()
        .map(|d| serde_json::json!({"image_id": d.image_id, "category_id": ds.category_id(d.class), "bbox": d.bbox.to_xywh(), "score": d.score}))
        .collect();
    let text = serde_json::to_string(&v).map_err(|e| Error::json(path, e))?;
    crate::util::write_atomic(path, text.as_bytes())
}
