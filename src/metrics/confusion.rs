//! What a detector gets wrong, detection by detection, and the detection confusion matrix.
//!
//! Detections scoring at least a threshold are matched to the objects of their image with VOC's
//! rule (`voc_eval.py`: IoU over 0.5 strictly, `+1` pixel areas, see [`crate::metrics::ap`]), in
//! two passes per image:
//! 1. by score, each detection against the objects **of its class**: the best overlap over 0.5
//!    makes it a true positive (the object is taken), a duplicate (already taken) or ignored
//!    (a difficult object) — exactly `voc_eval.py`'s TP/FP at that threshold;
//! 2. each detection left (no object of its class over 0.5), by score, against the objects of
//!    **other classes** not yet taken: the best over 0.5 makes it a wrong-class detection of that
//!    object (which is then taken); otherwise it is background.
//!
//! Objects never taken (and not difficult) are missed. The matrix has a row per true class and a
//! last row for background, a column per predicted class and a last column for background: row
//! `c` holds where the objects of class `c` went (found, confused, missed), so it sums to the
//! number of non-difficult objects of `c`; the background row counts the false detections
//! (background and duplicates) of each predicted class.

use super::ap::Detection;
use crate::boxes::voc_iou;
use crate::data::Dataset;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fmt;

/// VOC's overlap rule: a detection matches an object when their IoU is over this, strictly.
pub const MATCH_IOU: f64 = 0.5;

/// What one detection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// The right class on an object not found before (`gt` indexes the image's objects).
    TruePositive { gt: usize },
    /// Another class's object, not found by a detection of its own class.
    WrongClass { gt: usize },
    /// An object of its class that a higher-scored detection already found.
    Duplicate { gt: usize },
    /// No object overlaps it over [`MATCH_IOU`].
    Background,
    /// Its best object of its class is *difficult*: neither right nor wrong (VOC).
    Ignored { gt: usize },
}

impl Outcome {
    /// Short name for legends and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::TruePositive { .. } => "true positive",
            Outcome::WrongClass { .. } => "wrong class",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Background => "background",
            Outcome::Ignored { .. } => "ignored (difficult)",
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::WrongClass { .. } | Outcome::Duplicate { .. } | Outcome::Background)
    }
}

/// One image's detections (over the threshold, by score) with their outcomes, and the objects
/// no detection found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageErrors {
    /// Index of the image in the dataset.
    pub image: usize,
    pub dets: Vec<(Detection, Outcome)>,
    /// Indices into the image's objects (never difficult ones).
    pub missed: Vec<usize>,
}

impl ImageErrors {
    /// False detections (wrong class, duplicate, background) plus missed objects.
    pub fn n_errors(&self) -> usize {
        self.dets.iter().filter(|(_, o)| o.is_error()).count() + self.missed.len()
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.dets.iter().filter(|(_, o)| f(o)).count()
    }
}

/// Match one image's detections to its objects (see the module docs). `objects` are
/// `(box, class, difficult)`; detections in any order. Returns the detections by score
/// (stable) with their outcomes, and the missed objects.
pub fn match_image(
    objects: &[(crate::boxes::BBox, usize, bool)],
    dets: &[Detection],
) -> (Vec<(Detection, Outcome)>, Vec<usize>) {
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    let order = crate::nms::score_order(&scores);
    let gts: Vec<[f64; 4]> = objects.iter().map(|o| o.0.to_voc().map(|v| v as f64)).collect();
    let mut taken = vec![false; objects.len()];
    let mut outcome: Vec<Option<Outcome>> = vec![None; dets.len()];
    let best = |k: usize, keep: &dyn Fn(usize) -> bool| -> Option<usize> {
        let bb = dets[k].bbox.to_voc().map(|v| v as f64);
        let mut found: Option<(f64, usize)> = None;
        for (j, g) in gts.iter().enumerate() {
            if !keep(j) {
                continue;
            }
            let ov = voc_iou(&bb, g);
            if found.is_none_or(|(m, _)| ov > m) {
                found = Some((ov, j));
            }
        }
        found.filter(|(ov, _)| *ov > MATCH_IOU).map(|(_, j)| j)
    };
    // 1: against objects of the detection's class, voc_eval.py's rule.
    for &k in &order {
        let c = dets[k].class;
        if let Some(j) = best(k, &|j| objects[j].1 == c) {
            outcome[k] = Some(if objects[j].2 {
                Outcome::Ignored { gt: j }
            } else if !taken[j] {
                taken[j] = true;
                Outcome::TruePositive { gt: j }
            } else {
                Outcome::Duplicate { gt: j }
            });
        }
    }
    // 2: what is left, against other classes' objects nobody found.
    for &k in &order {
        if outcome[k].is_some() {
            continue;
        }
        let c = dets[k].class;
        outcome[k] = Some(match best(k, &|j| objects[j].1 != c && !taken[j]) {
            Some(j) if objects[j].2 => Outcome::Ignored { gt: j },
            Some(j) => {
                taken[j] = true;
                Outcome::WrongClass { gt: j }
            }
            None => Outcome::Background,
        });
    }
    let matched = order.iter().map(|&k| (dets[k], outcome[k].unwrap_or(Outcome::Background))).collect();
    let missed = (0..objects.len()).filter(|&j| !taken[j] && !objects[j].2).collect();
    (matched, missed)
}

/// The detection confusion matrix of a dataset (see the module docs), with every image's
/// outcomes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Confusion {
    /// The dataset's classes; the matrix's last row and column are background.
    pub classes: Vec<String>,
    /// `(C + 1) x (C + 1)`: `matrix[true][predicted]`.
    pub matrix: Vec<Vec<usize>>,
    /// Detections scoring below this were left out.
    pub score_thresh: f32,
    /// Every image of the dataset, in order.
    pub images: Vec<ImageErrors>,
}

/// One cell of the matrix off its diagonal ([`Confusion::most_confused`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Confused {
    /// `"background"` for false detections.
    pub actual: String,
    /// `"background"` for missed objects.
    pub predicted: String,
    pub count: usize,
}

/// The name of the matrix's last row and column.
pub const BACKGROUND: &str = "background";

/// Match `dets` scoring at least `score_thresh` to the objects of `ds` and count the outcomes.
/// An error names a detection whose image or class the dataset does not have.
pub fn confusion(ds: &Dataset, dets: &[Detection], score_thresh: f32) -> Result<Confusion> {
    let index: HashMap<u64, usize> = ds.images.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let nc = ds.classes.len();
    let mut per_image: Vec<Vec<Detection>> = vec![vec![]; ds.len()];
    for (k, d) in dets.iter().enumerate() {
        let bad =
            |problem: String| Error::Annotation { path: ds.source.clone(), image: d.image_id.to_string(), problem };
        let i = *index
            .get(&d.image_id)
            .ok_or_else(|| bad(format!("detection {k}: image_id {} is not in the ground truth", d.image_id)))?;
        if d.class >= nc {
            return Err(bad(format!("detection {k}: class {} is not one of the {nc} classes", d.class)));
        }
        if d.score >= score_thresh {
            per_image[i].push(*d);
        }
    }
    let mut matrix = vec![vec![0usize; nc + 1]; nc + 1];
    let mut images = Vec::with_capacity(ds.len());
    for (i, found) in per_image.into_iter().enumerate() {
        let objects: Vec<_> = ds.images[i].objects.iter().map(|o| (o.bbox, o.class, o.difficult)).collect();
        let (matched, missed) = match_image(&objects, &found);
        for (d, o) in &matched {
            match *o {
                Outcome::TruePositive { gt } | Outcome::WrongClass { gt } => matrix[objects[gt].1][d.class] += 1,
                Outcome::Duplicate { .. } | Outcome::Background => matrix[nc][d.class] += 1,
                Outcome::Ignored { .. } => {}
            }
        }
        for &j in &missed {
            matrix[objects[j].1][nc] += 1;
        }
        images.push(ImageErrors { image: i, dets: matched, missed });
    }
    Ok(Confusion { classes: ds.classes.clone(), matrix, score_thresh, images })
}

impl Confusion {
    /// Row or column name `i` (the last is background).
    pub fn label(&self, i: usize) -> &str {
        self.classes.get(i).map(String::as_str).unwrap_or(BACKGROUND)
    }

    /// The `n` largest cells off the diagonal, largest first (ties: true class, then
    /// predicted, in order), zeros left out. fastai's `most_confused`, with background.
    pub fn most_confused(&self, n: usize) -> Vec<Confused> {
        let k = self.matrix.len();
        let mut cells: Vec<(usize, usize, usize)> = (0..k)
            .flat_map(|a| (0..k).map(move |p| (a, p)))
            .filter(|&(a, p)| a != p)
            .map(|(a, p)| (a, p, self.matrix[a][p]))
            .filter(|c| c.2 > 0)
            .collect();
        cells.sort_by(|x, y| y.2.cmp(&x.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
        cells
            .into_iter()
            .take(n)
            .map(|(a, p, count)| Confused { actual: self.label(a).into(), predicted: self.label(p).into(), count })
            .collect()
    }

    /// Objects found with the right class.
    pub fn true_positives(&self) -> usize {
        (0..self.classes.len()).map(|c| self.matrix[c][c]).sum()
    }

    /// Objects no detection found.
    pub fn missed(&self) -> usize {
        let nc = self.classes.len();
        (0..nc).map(|c| self.matrix[c][nc]).sum()
    }

    /// Objects found with another class.
    pub fn wrong_class(&self) -> usize {
        let nc = self.classes.len();
        (0..nc).flat_map(|a| (0..nc).map(move |p| (a, p))).filter(|(a, p)| a != p).map(|(a, p)| self.matrix[a][p]).sum()
    }

    /// Detections of no object (background and duplicates).
    pub fn false_detections(&self) -> usize {
        self.matrix[self.classes.len()].iter().sum()
    }

    /// Detections that duplicate a found object.
    pub fn duplicates(&self) -> usize {
        self.images.iter().map(|e| e.count(|o| matches!(o, Outcome::Duplicate { .. }))).sum()
    }

    /// Images by number of errors (false detections plus missed objects), most first, ties by
    /// dataset order: the images to look at when no model is at hand to rank them by loss.
    pub fn worst_images(&self, n: usize) -> Vec<&ImageErrors> {
        let mut v: Vec<&ImageErrors> = self.images.iter().collect();
        v.sort_by(|a, b| b.n_errors().cmp(&a.n_errors()).then(a.image.cmp(&b.image)));
        v.truncate(n);
        v
    }

    /// Objects found (with their class) by size, the square root of the box's area as a fraction
    /// of the image's: `(bucket, found, objects)` for `< 0.1`, `0.1-0.2`, `0.2-0.4`, `>= 0.4`.
    /// `ds` must be the dataset the matrix was made from.
    pub fn found_by_size(&self, ds: &Dataset) -> Vec<(&'static str, usize, usize)> {
        const EDGES: [(f32, &str); 4] =
            [(0.1, "size < 0.1"), (0.2, "size 0.1-0.2"), (0.4, "size 0.2-0.4"), (f32::INFINITY, "size >= 0.4")];
        let mut out: Vec<(&'static str, usize, usize)> = EDGES.iter().map(|e| (e.1, 0, 0)).collect();
        self.tally(ds, &mut out, |r, o| {
            let rel = (o.bbox.area() / (r.width as f32 * r.height as f32).max(1.0)).sqrt();
            EDGES.iter().position(|e| rel < e.0).unwrap_or(EDGES.len() - 1)
        });
        out
    }

    /// Objects found by where they are: touching the image's border (within 2% of its side) or
    /// inside it: `(bucket, found, objects)`.
    pub fn found_by_position(&self, ds: &Dataset) -> Vec<(&'static str, usize, usize)> {
        let mut out = vec![("touching the border", 0, 0), ("inside", 0, 0)];
        self.tally(ds, &mut out, |r, o| {
            let (mw, mh) = (r.width as f32 * 0.02, r.height as f32 * 0.02);
            let b = o.bbox;
            usize::from(
                !(b.left <= mw
                    || b.top <= mh
                    || b.right >= r.width as f32 - 1.0 - mw
                    || b.bottom >= r.height as f32 - 1.0 - mh),
            )
        });
        out
    }

    fn tally(
        &self,
        ds: &Dataset,
        out: &mut [(&'static str, usize, usize)],
        bucket: impl Fn(&crate::data::ImageRecord, &crate::data::Object) -> usize,
    ) {
        for e in &self.images {
            let Some(r) = ds.images.get(e.image) else { continue };
            for (j, o) in r.objects.iter().enumerate() {
                if o.difficult {
                    continue;
                }
                let k = bucket(r, o).min(out.len() - 1);
                out[k].2 += 1;
                if e.dets.iter().any(|(_, oc)| *oc == Outcome::TruePositive { gt: j }) {
                    out[k].1 += 1;
                }
            }
        }
    }

    /// One line: found, confused, missed, false detections.
    pub fn summary(&self) -> String {
        format!(
            "score >= {}: {} objects found, {} with the wrong class, {} missed; {} false detections ({} duplicates)",
            self.score_thresh,
            self.true_positives(),
            self.wrong_class(),
            self.missed(),
            self.false_detections(),
            self.duplicates()
        )
    }
}

impl fmt::Display for Confusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.matrix.len();
        let w = (0..k).map(|i| self.label(i).len()).max().unwrap_or(4).max(16);
        writeln!(f, "{}", self.summary())?;
        write!(f, "{:>w$} |", "true \\ predicted")?;
        for p in 0..k {
            write!(f, " {:>5.5}", self.label(p))?;
        }
        writeln!(f)?;
        for a in 0..k {
            write!(f, "{:>w$} |", self.label(a))?;
            for p in 0..k {
                write!(f, " {:>5}", self.matrix[a][p])?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
