//! What a dataset holds before anything trains on it ([`DatasetStats`]): images and objects per
//! class, objects per image, the boxes' widths, heights and aspect ratios relative to their image,
//! where their centres fall, and the objects that are tiny at the training size or touch the
//! image's border. Plain numbers, from a [`Dataset`] of any format; `fastdet data stats` prints
//! them and [`crate::show::dataset_report`] draws them (Ultralytics' `labels.jpg`, MMDetection's
//! `dataset_analysis.py`).
//!
//! Every object counts, difficult ones included (as [`Dataset::class_counts`]); how many are
//! difficult is said beside. Sizes are relative to the image, so they are what the SSD sees once
//! the image is squashed to `sz x sz` (the lesson's `CropType::No`): a box `w` pixels wide in a
//! `W`-pixel image is `w * sz / W` pixels wide at training size.

use super::Dataset;
use crate::error::{Error, Result};
use std::fmt;

/// Boxes narrower or lower than this at the training size are tiny (Ultralytics warns about
/// labels under 3 px; SSD's coarsest use of them is a 4x4 grid cell of 56 px at 224).
pub const TINY_PX: f32 = 4.0;

/// Bins of the width and height histograms (0 to 1 of the image side).
pub const SIZE_BINS: usize = 20;

/// Bins of the aspect-ratio histogram: `log2(w / h)` from -3 to 3 (1/8 to 8), half an octave each.
pub const ASPECT_BINS: usize = 12;
/// The aspect-ratio histogram spans `2^-ASPECT_OCTAVES` to `2^ASPECT_OCTAVES`.
pub const ASPECT_OCTAVES: f64 = 3.0;

/// Cells per side of the centre heat map.
pub const CENTRE_BINS: usize = 16;

/// Counts of values in equal bins between `lo` and `hi`; values outside go to the end bins.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<usize>,
}

impl Histogram {
    /// `bins` equal bins from `lo` to `hi` over `values`.
    pub fn of(values: impl IntoIterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Self {
        let n = bins.max(1);
        let mut counts = vec![0; n];
        for v in values {
            counts[bin(v, lo, hi, n)] += 1;
        }
        Self { lo, hi, counts }
    }

    /// The `(left, right)` edges of bin `i`.
    pub fn edges(&self, i: usize) -> (f64, f64) {
        let w = (self.hi - self.lo) / self.counts.len() as f64;
        (self.lo + i as f64 * w, self.lo + (i + 1) as f64 * w)
    }

    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// The bin of `v` among `n` equal bins from `lo` to `hi` (the last bin includes `hi`; values
/// outside go to the end bins).
fn bin(v: f64, lo: f64, hi: f64, n: usize) -> usize {
    let t = ((v - lo) / (hi - lo) * n as f64).floor();
    if t.is_nan() || t < 0.0 {
        0
    } else {
        (t as usize).min(n - 1)
    }
}

/// One object of a dataset: the index of its image and its index among the image's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRef {
    pub image: usize,
    pub object: usize,
}

/// One object's box relative to its image (0..1 of the width and of the height).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelBox {
    pub at: ObjectRef,
    pub class: usize,
    /// Width and height as fractions of the image's (pixels covered: `right - left + 1` over `W`).
    pub w: f64,
    pub h: f64,
    /// The centre, fractions of the width and height.
    pub cx: f64,
    pub cy: f64,
}

impl RelBox {
    /// `w / h` once the image is squashed to a square (what the SSD's anchors meet).
    pub fn aspect(&self) -> f64 {
        self.w / self.h
    }
}

/// A dataset's statistics at training size `sz` (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetStats {
    /// Where the annotations came from ([`Dataset::source`]).
    pub source: String,
    pub sz: u32,
    pub classes: Vec<String>,
    pub n_images: usize,
    /// Every object, difficult ones included.
    pub n_objects: usize,
    pub n_difficult: usize,
    /// Images with at least one object of each class, in class order.
    pub images_per_class: Vec<usize>,
    /// Objects of each class, in class order.
    pub objects_per_class: Vec<usize>,
    /// `objects_per_image[n]`: images with exactly `n` objects (index 0: images without any).
    pub objects_per_image: Vec<usize>,
    /// Every object's box relative to its image, in dataset order.
    pub boxes: Vec<RelBox>,
    /// Relative widths and heights ([`SIZE_BINS`] bins from 0 to 1).
    pub widths: Histogram,
    pub heights: Histogram,
    /// `log2(w / h)` ([`ASPECT_BINS`] bins from -3 to 3; beyond that in the end bins).
    pub aspects: Histogram,
    /// `centres[row][col]`: boxes whose centre falls in that cell of a [`CENTRE_BINS`]-square
    /// grid over the image (row = y).
    pub centres: Vec<Vec<usize>>,
    /// Objects under [`TINY_PX`] wide or high at `sz x sz`.
    pub tiny: Vec<ObjectRef>,
    /// Objects whose outer edge lies within a pixel of the image's edge (cut off by the frame,
    /// perhaps).
    pub touching_border: Vec<ObjectRef>,
}

impl DatasetStats {
    /// The statistics of `ds` at training size `sz`. Errors: `sz` 0, an image of size 0.
    pub fn new(ds: &Dataset, sz: u32) -> Result<Self> {
        if sz == 0 {
            return Err(Error::Invalid(format!("{}: statistics at training size 0", ds.source.display())));
        }
        let nc = ds.classes.len();
        let (mut images_per_class, mut objects_per_class) = (vec![0; nc], vec![0; nc]);
        let (mut objects_per_image, mut boxes) = (vec![], vec![]);
        let (mut tiny, mut touching_border) = (vec![], vec![]);
        let mut centres = vec![vec![0; CENTRE_BINS]; CENTRE_BINS];
        let mut n_difficult = 0;
        for (i, rec) in ds.images.iter().enumerate() {
            if rec.width == 0 || rec.height == 0 {
                return Err(Error::Annotation {
                    path: ds.source.clone(),
                    image: rec.file_name.clone(),
                    problem: format!("an image of {}x{} pixels has no box statistics", rec.width, rec.height),
                });
            }
            let n = rec.objects.len();
            if objects_per_image.len() <= n {
                objects_per_image.resize(n + 1, 0);
            }
            objects_per_image[n] += 1;
            let mut seen = vec![false; nc];
            let (iw, ih) = (rec.width as f64, rec.height as f64);
            for (j, o) in rec.objects.iter().enumerate() {
                let c = o.class;
                if c >= nc {
                    return Err(Error::Annotation {
                        path: ds.source.clone(),
                        image: rec.file_name.clone(),
                        problem: format!("object {j} has class {c} of {nc} classes"),
                    });
                }
                objects_per_class[c] += 1;
                seen[c] = true;
                n_difficult += o.difficult as usize;
                let b = o.bbox;
                let at = ObjectRef { image: i, object: j };
                let (w, h) = (b.width() as f64 / iw, b.height() as f64 / ih);
                let (cx, cy) = (
                    (b.left as f64 + b.right as f64 + 1.0) / 2.0 / iw,
                    (b.top as f64 + b.bottom as f64 + 1.0) / 2.0 / ih,
                );
                centres[bin(cy, 0.0, 1.0, CENTRE_BINS)][bin(cx, 0.0, 1.0, CENTRE_BINS)] += 1;
                let (w_px, h_px) = (b.width() as f64 * sz as f64 / iw, b.height() as f64 * sz as f64 / ih);
                if w_px < TINY_PX as f64 || h_px < TINY_PX as f64 {
                    tiny.push(at);
                }
                // The box's outer edges (left, right + 1) within a pixel of the frame's (0, W).
                let near = |lo: f32, hi: f32, size: f64| (lo as f64) < 1.0 || size - (hi as f64 + 1.0) < 1.0;
                if near(b.left, b.right, iw) || near(b.top, b.bottom, ih) {
                    touching_border.push(at);
                }
                boxes.push(RelBox { at, class: c, w, h, cx, cy });
            }
            for (c, s) in seen.into_iter().enumerate() {
                images_per_class[c] += s as usize;
            }
        }
        Ok(Self {
            source: ds.source.display().to_string(),
            sz,
            classes: ds.classes.clone(),
            n_images: ds.len(),
            n_objects: boxes.len(),
            n_difficult,
            images_per_class,
            objects_per_class,
            objects_per_image,
            widths: Histogram::of(boxes.iter().map(|b| b.w), 0.0, 1.0, SIZE_BINS),
            heights: Histogram::of(boxes.iter().map(|b| b.h), 0.0, 1.0, SIZE_BINS),
            aspects: Histogram::of(
                boxes.iter().map(|b| b.aspect().log2()),
                -ASPECT_OCTAVES,
                ASPECT_OCTAVES,
                ASPECT_BINS,
            ),
            boxes,
            centres,
            tiny,
            touching_border,
        })
    }

    /// Images without any object.
    pub fn empty_images(&self) -> usize {
        self.objects_per_image.first().copied().unwrap_or(0)
    }

    /// The most objects in one image.
    pub fn max_objects_per_image(&self) -> usize {
        self.objects_per_image.len().saturating_sub(1)
    }

    /// Mean objects per image.
    pub fn mean_objects_per_image(&self) -> f64 {
        self.n_objects as f64 / self.n_images.max(1) as f64
    }

    /// The median of the relative widths and heights, `(w, h)` (0 without objects).
    pub fn median_size(&self) -> (f64, f64) {
        let median = |f: fn(&RelBox) -> f64| {
            let mut v: Vec<f64> = self.boxes.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => 0.0,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        (median(|b| b.w), median(|b| b.h))
    }
}

/// The short text summary `fastdet data stats` prints.
impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.source)?;
        writeln!(
            f,
            "images: {}, objects: {} ({} difficult), {} images without objects",
            self.n_images,
            self.n_objects,
            self.n_difficult,
            self.empty_images()
        )?;
        writeln!(
            f,
            "objects per image: mean {:.2}, max {}",
            self.mean_objects_per_image(),
            self.max_objects_per_image()
        )?;
        let (mw, mh) = self.median_size();
        writeln!(f, "median box: {:.3} x {:.3} of the image (w x h)", mw, mh)?;
        writeln!(f, "tiny boxes (under {TINY_PX} px at {}): {}", self.sz, self.tiny.len())?;
        writeln!(f, "boxes touching the border: {}", self.touching_border.len())?;
        writeln!(f, "{:<16} {:>7} {:>8}", "class", "images", "objects")?;
        for (c, name) in self.classes.iter().enumerate() {
            writeln!(f, "{:<16} {:>7} {:>8}", name, self.images_per_class[c], self.objects_per_class[c])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::BBox;
    use crate::data::{ImageRecord, Object};

    fn obj(top: f32, left: f32, bottom: f32, right: f32, class: usize) -> Object {
        Object { bbox: BBox::new(top, left, bottom, right), class, difficult: false }
    }

    /// Three images with hand-checked answers (see each object's comment).
    fn hand_made() -> Dataset {
        let rec = |id: u64, w: u32, h: u32, objects: Vec<Object>| ImageRecord {
            id,
            file_name: format!("{id}.jpg"),
            width: w,
            height: h,
            objects,
        };
        let mut difficult = obj(10.0, 10.0, 29.0, 29.0, 1);
        difficult.difficult = true;
        Dataset {
            source: "hand-made".into(),
            image_dir: ".".into(),
            classes: vec!["cat".into(), "dog".into(), "bird".into()],
            category_ids: vec![],
            images: vec![
                // 448x448: at sz 224 every length halves.
                rec(
                    1,
                    448,
                    448,
                    vec![
                        obj(0.0, 100.0, 199.0, 299.0, 0),   // 200x200 -> 100 px; top row 0: border
                        obj(50.0, 50.0, 55.0, 106.0, 1),    // 57 w x 6 h -> 3 px high: tiny
                        obj(300.0, 440.0, 400.0, 447.0, 0), // right = 447 = W - 1: border; 8 w -> 4 px: not tiny
                    ],
                ),
                // 100 x 50 (w x h): at 224 x scales 2.24, y 4.48.
                rec(
                    2,
                    100,
                    50,
                    vec![
                        obj(20.0, 1.0, 29.0, 1.0, 2), // 1 px wide -> 2.24 px: tiny; left 1: not border
                        difficult,                    // 20x20, bottom 29 < 49; inside
                    ],
                ),
                rec(3, 64, 64, vec![]),
            ],
            warnings: vec![],
        }
    }

    #[test]
    fn counts_sizes_tiny_and_border_of_a_hand_made_set() {
        let s = DatasetStats::new(&hand_made(), 224).unwrap();
        assert_eq!((s.n_images, s.n_objects, s.n_difficult), (3, 5, 1));
        assert_eq!(s.objects_per_class, vec![2, 2, 1]);
        assert_eq!(s.images_per_class, vec![1, 2, 1]);
        assert_eq!(s.objects_per_image, vec![1, 0, 1, 1]);
        assert_eq!((s.empty_images(), s.max_objects_per_image()), (1, 3));
        let at = |image, object| ObjectRef { image, object };
        assert_eq!(s.tiny, vec![at(0, 1), at(1, 0)]);
        assert_eq!(s.touching_border, vec![at(0, 0), at(0, 2)]);
        // The first box: 200/448 wide and high, centred at ((100 + 300) / 2, (0 + 200) / 2) / 448.
        let b = s.boxes[0];
        assert!((b.w - 200.0 / 448.0).abs() < 1e-12 && (b.h - 200.0 / 448.0).abs() < 1e-12);
        assert!((b.cx - 200.0 / 448.0).abs() < 1e-12 && (b.cy - 100.0 / 448.0).abs() < 1e-12, "{b:?}");
        // The 1-px-wide box of the 100x50 image: w 0.01, h 10/50 = 0.2, aspect 0.05.
        let b = s.boxes[3];
        assert!((b.w - 0.01).abs() < 1e-12 && (b.h - 0.2).abs() < 1e-12 && (b.aspect() - 0.05).abs() < 1e-12);
        // Every box lands in exactly one bin of each histogram and of the heat map.
        assert_eq!((s.widths.total(), s.heights.total(), s.aspects.total()), (5, 5, 5));
        assert_eq!(s.centres.iter().flatten().sum::<usize>(), 5);
        // log2(w/h), 12 bins of half an octave from -3: 0.05 (-4.3) and 8/101 (-3.7) fall below,
        // into the first bin; 20/100 over 20/50 = 0.5 (-1) into bin 4; the square (0) into bin
        // 6; 57/6 (3.2) beyond the last.
        assert_eq!(s.aspects.counts, vec![2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]);
        // The centre (0.446, 0.223) of the first box: row 3, column 7 of 16.
        assert_eq!(s.centres[3][7], 1);
    }

    #[test]
    fn at_a_larger_training_size_fewer_boxes_are_tiny() {
        let s = DatasetStats::new(&hand_made(), 448).unwrap();
        // 6 px high at 448 (3 at 224) and 1 px of 100 -> 4.48 px: none tiny.
        assert!(s.tiny.is_empty(), "{:?}", s.tiny);
    }

    #[test]
    fn histogram_edges_and_end_bins() {
        let h = Histogram::of([0.0, 0.05, 0.999, 1.0, 7.0, -1.0], 0.0, 1.0, 20);
        assert_eq!(h.counts[0], 2); // 0 and -1
        assert_eq!(h.counts[1], 1); // 0.05 is the second bin's left edge
        assert_eq!(h.counts[19], 3); // 0.999, 1 and 7
        assert_eq!(h.edges(1), (0.05, 0.1));
    }

    #[test]
    fn a_class_out_of_range_is_an_error_naming_the_image() {
        let mut ds = hand_made();
        ds.images[1].objects[0].class = 7;
        let e = DatasetStats::new(&ds, 224).unwrap_err().to_string();
        assert!(e.contains("2.jpg") && e.contains("class 7 of 3"), "{e}");
    }
}
