//! Pascal VOC data: the lesson's COCO-style JSON and the original VOC XML, read into one typed
//! [`Dataset`] (lesson 8, "Pascal VOC").
//!
//! A dataset root is laid out as the lesson's `data/pascal`:
//! ```text
//! <root>/pascal_train2007.json   pascal_val2007.json   (pascal_test2007.json)
//! <root>/VOCdevkit/VOC2007/{JPEGImages, Annotations, ImageSets/Main/<split>.txt}
//! ```
//! The bundled sample (`data/coco128-voc`, 65 real COCO photos mapped to the 20 VOC classes) has
//! the same layout, so the same calls open either.
//!
//! Annotation checks, the same for JSON and XML:
//! - a box with zero or negative width or height is **skipped with a warning** (kept in
//!   [`Dataset::warnings`] and printed to stderr), since VOC-derived files do contain a few;
//! - a box reaching outside the image, an unknown class, an annotation of an image that is not
//!   listed, or a missing image file is an **error** naming the file and the image.
//!
//! VOC "difficult" objects (`ignore: 1` in the JSON) are kept, flagged in [`Object::difficult`];
//! [`Dataset::annotations`] leaves them out as the lesson's `trn_anno` does.

mod formats;
mod image_io;
mod json;
mod lesson_csv;
pub mod loader;
mod split;
pub mod stats;
pub mod synthetic;
mod voc;
mod yolo;

pub use formats::{export, open_dataset, DataSource, Format, Split, Written};
pub use image_io::{decode_for_warp, decode_jpeg, decode_jpeg_reduced, decode_scaled, open_image};
pub use loader::{
    collate, keep_freed_batches, Batch, BatchTarget, DataLoader, DataOpts, DetDataset, ImageData, Sample, Target,
    TargetKind,
};
pub use split::get_cv_idxs;
pub use stats::DatasetStats;

use crate::boxes::BBox;
use crate::error::{Error, Result};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// The 20 Pascal VOC classes in the lesson's (alphabetical) order; JSON category id = index + 1.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// One annotated object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub bbox: BBox,
    /// Index into [`Dataset::classes`] (0-based; the JSON's `category_id` is this + 1 for VOC).
    pub class: usize,
    /// VOC "difficult" (`ignore: 1` in the lesson's JSON).
    pub difficult: bool,
}

/// One image and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The JSON `id`; for XML, the file stem read as a number (VOC stems are numbers), else the
    /// 1-based line of the split file.
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<Object>,
}

impl ImageRecord {
    /// The lesson's largest object: the non-difficult object with the largest
    /// `(y2 - y1) * (x2 - x1)`; ties go to the first listed (Python's stable sort).
    pub fn largest(&self) -> Option<&Object> {
        self.objects.iter().filter(|o| !o.difficult).fold(None, |best: Option<&Object>, o| match best {
            Some(b) if b.bbox.area() >= o.bbox.area() => Some(b),
            _ => Some(o),
        })
    }
}

/// Images with their objects, the class names, and where the image files are.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Where the annotations came from (the JSON file or the VOC split file).
    pub source: PathBuf,
    pub image_dir: PathBuf,
    pub classes: Vec<String>,
    /// The COCO `category_id` of each class, in class order, as the COCO JSON it came from
    /// numbers them (they need not be 1..=n); empty for the other formats, whose ids are the
    /// lesson's class index + 1. [`Dataset::category_id`] and [`Dataset::class_of_category`]
    /// read it; results files (`fastdet predict`, `fastdet eval`) use these ids.
    pub category_ids: Vec<u64>,
    pub images: Vec<ImageRecord>,
    /// Annotations skipped while loading, one line each (also printed to stderr).
    pub warnings: Vec<String>,
}

impl Dataset {
    /// Load the lesson's COCO-style JSON; images are looked up in `image_dir`.
    pub fn from_json(json: impl AsRef<Path>, image_dir: impl AsRef<Path>) -> Result<Self> {
        json::load(json.as_ref(), image_dir.as_ref(), json::Flavor::Lesson)
    }

    /// Load VOC XML annotations of the ids listed in `<voc>/ImageSets/Main/<split>.txt`, where
    /// `voc` is a `VOCdevkit/VOC2007` folder.
    pub fn from_voc(voc: impl AsRef<Path>, split: &str) -> Result<Self> {
        let classes: Vec<String> = VOC_CLASSES.iter().map(|s| s.to_string()).collect();
        voc::load(voc.as_ref(), split, &classes)
    }

    /// [`Dataset::from_voc`] with another list of class names (a dataset of your own in VOC layout).
    pub fn from_voc_with_classes(voc: impl AsRef<Path>, split: &str, classes: &[String]) -> Result<Self> {
        voc::load(voc.as_ref(), split, classes)
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn path(&self, i: usize) -> PathBuf {
        self.image_dir.join(&self.images[i].file_name)
    }

    /// Index of the image with this id.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.images.iter().position(|r| r.id == id)
    }

    /// Image `i` scaled so its short side is `sz` ([`crate::transforms::scale_to`]), with the
    /// factors `(sy, sx)` from its annotated size: [`Dataset::image_for_warp`] resized to that
    /// size where it is larger.
    pub fn image_scaled(&self, i: usize, sz: u32) -> Result<(RgbImage, f32, f32)> {
        let s = self.image_for_warp(i, sz)?;
        Ok((s.to_scaled()?, s.sy, s.sx))
    }

    /// Image `i` ready for [`crate::transforms::Tfms::apply_warp`] at `sz` (what the loader
    /// caches). A JPEG is decoded by libjpeg-turbo ([`decode_jpeg`]), at a reduced DCT scale
    /// when it is at least twice the size: a fraction of the work of decoding it whole and
    /// averaging it down. Anything else, and any JPEG libjpeg-turbo declines or whose size
    /// differs from the annotation, goes through [`Dataset::image`] and its checks.
    pub fn image_for_warp(&self, i: usize, sz: u32) -> Result<crate::transforms::ScaledImage> {
        if let Some(rec) = self.images.get(i) {
            let (nw, nh) = crate::transforms::scaled_size(rec.width, rec.height, sz)?;
            if let Some((img, full)) = std::fs::read(self.path(i)).ok().and_then(|b| decode_jpeg(&b, nw, nh)) {
                if full == (rec.width, rec.height) {
                    return crate::transforms::ScaledImage::new(img, full, sz);
                }
            }
        }
        let img = self.image(i)?;
        let full = img.dimensions();
        crate::transforms::ScaledImage::new(img, full, sz)
    }

    /// Decode image `i` as RGB (greyscale, CMYK, PNG... are converted), checking that its size
    /// is the one the annotation gives (otherwise the boxes would be wrong).
    pub fn image(&self, i: usize) -> Result<RgbImage> {
        let rec = self.images.get(i).ok_or_else(|| {
            Error::Invalid(format!("image index {i} out of range: the dataset has {} images", self.len()))
        })?;
        let path = self.path(i);
        let img = open_image(&path).map_err(|e| match e {
            Error::Image { path, problem, .. } => Error::Image { path, image: rec.id.to_string(), problem },
            e => e,
        })?;
        if img.dimensions() != (rec.width, rec.height) {
            return Err(Error::Image {
                path,
                image: rec.id.to_string(),
                problem: format!(
                    "decoded size {}x{} differs from the annotated {}x{} in {}",
                    img.width(),
                    img.height(),
                    rec.width,
                    rec.height,
                    self.source.display()
                ),
            });
        }
        Ok(img)
    }

    /// The lesson's `trn_anno[id]`: `(box, class)` of every object that is not difficult.
    pub fn annotations(&self, i: usize) -> Vec<(BBox, usize)> {
        self.images[i].objects.iter().filter(|o| !o.difficult).map(|o| (o.bbox, o.class)).collect()
    }

    /// The largest object of every image (`None` where an image has only difficult objects).
    pub fn largest(&self) -> Vec<Option<Object>> {
        self.images.iter().map(|r| r.largest().cloned()).collect()
    }

    pub fn class_name(&self, class: usize) -> &str {
        &self.classes[class]
    }

    /// The COCO `category_id` of class index `class`: the source JSON's id, else `class + 1`.
    pub fn category_id(&self, class: usize) -> u64 {
        self.category_ids.get(class).copied().unwrap_or(class as u64 + 1)
    }

    /// The class index of a COCO `category_id` ([`Dataset::category_id`]'s inverse); `None`
    /// for an id no class has.
    pub fn class_of_category(&self, id: u64) -> Option<usize> {
        (0..self.classes.len()).find(|&c| self.category_id(c) == id)
    }

    /// The category ids, said for an error message: `1..=20`, or the list when they are not
    /// contiguous from 1.
    pub fn category_ids_described(&self) -> String {
        let ids: Vec<u64> = (0..self.classes.len()).map(|c| self.category_id(c)).collect();
        if ids.iter().enumerate().all(|(i, &id)| id == i as u64 + 1) {
            format!("1..={}", ids.len())
        } else {
            format!("{ids:?}")
        }
    }

    /// Number of objects (difficult ones included).
    pub fn num_objects(&self) -> usize {
        self.images.iter().map(|r| r.objects.len()).sum()
    }

    /// Write the dataset in the lesson's JSON format (`pascal_train2007.json`); with
    /// [`Dataset::from_voc`] this makes the lesson's files from the VOC XML.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        json::save(self, path.as_ref(), json::Flavor::Lesson)
    }

    /// The lesson's `lrg.csv`: `fn,cat` with the class name of each image's largest object.
    pub fn write_lrg_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        lesson_csv::write_lrg(self, path.as_ref())
    }

    /// The lesson's `bb.csv`: `fn,bbox` with the largest box as `"y1 x1 y2 x2"`.
    pub fn write_bb_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        lesson_csv::write_bb(self, path.as_ref())
    }

    /// The lesson's `mc.csv`: `fn,clas` with the image's class names (each once, first-seen order).
    pub fn write_mc_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        lesson_csv::write_mc(self, path.as_ref())
    }

    /// The lesson's `mbb.csv`: `fn,bbox` with all boxes concatenated as `"y1 x1 y2 x2 y1 ..."`.
    pub fn write_mbb_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        lesson_csv::write_mbb(self, path.as_ref())
    }

    /// The images at `indices` (a validation split's ground truth, say), in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset { images: indices.iter().filter_map(|&i| self.images.get(i).cloned()).collect(), ..self.clone() }
    }

    /// Objects per class (difficult ones included), in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.images.iter().flat_map(|r| &r.objects).for_each(|o| counts[o.class] += 1);
        counts
    }

    /// In a notebook: a summary table (images, objects, objects per class).
    pub fn evcxr_display(&self) {
        let mut html = format!(
            "<p><b>{}</b>: {} images, {} objects{}</p><table><tr><th>class</th><th>objects</th></tr>",
            self.source.display(),
            self.len(),
            self.num_objects(),
            if self.warnings.is_empty() { String::new() } else { format!(", {} warnings", self.warnings.len()) }
        );
        for (name, n) in self.classes.iter().zip(self.class_counts()) {
            html += &format!("<tr><td>{name}</td><td>{n}</td></tr>");
        }
        println!("EVCXR_BEGIN_CONTENT text/html\n{html}</table>\nEVCXR_END_CONTENT");
    }

    pub(crate) fn warn(&mut self, message: String) {
        eprintln!("warning: {message}");
        self.warnings.push(message);
    }
}

/// What the loaders decide about one box read from a file.
pub(crate) enum BoxCheck {
    Ok(BBox),
    /// Zero or negative size: skip it, with this warning.
    Skip(String),
}

/// The shared box rule of both loaders (see the module docs).
pub(crate) fn check_box(bbox: BBox, width: u32, height: u32, source: &Path, image: &str) -> Result<BoxCheck> {
    let xywh = bbox.to_xywh();
    if bbox.is_empty() {
        return Ok(BoxCheck::Skip(format!(
            "{}: image {image}: skipped a box with zero or negative size (x y w h = {} {} {} {})",
            source.display(),
            xywh[0],
            xywh[1],
            xywh[2],
            xywh[3]
        )));
    }
    if !bbox.is_inside(width, height) {
        return Err(Error::Annotation {
            path: source.to_path_buf(),
            image: image.to_string(),
            problem: format!(
                "box (x y w h = {} {} {} {}) reaches outside the {width}x{height} image",
                xywh[0], xywh[1], xywh[2], xywh[3]
            ),
        });
    }
    Ok(BoxCheck::Ok(bbox))
}

/// A dataset root in the lesson's `data/pascal` layout (see the module docs).
#[derive(Debug, Clone)]
pub struct Pascal {
    pub root: PathBuf,
}

impl Pascal {
    /// Open a root folder; an error says how to get the data when it is not there.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::MissingDataset {
                path: root,
                hint: "run `make data-voc` for the full VOC2007 where internet is available, \
                       or use fastdet::data::sample_root() for the bundled sample"
                    .into(),
            });
        }
        Ok(Self { root })
    }

    /// The lesson's data, else the bundled sample: `$FASTDET_DATA` if set, else `data/pascal`
    /// of this crate when it exists, else [`sample_root`].
    pub fn open_default() -> Result<Self> {
        Self::open(default_root())
    }

    /// `<root>/VOCdevkit/VOC2007`
    pub fn voc_dir(&self) -> PathBuf {
        self.root.join("VOCdevkit").join("VOC2007")
    }

    /// `<root>/VOCdevkit/VOC2007/JPEGImages`
    pub fn image_dir(&self) -> PathBuf {
        self.voc_dir().join("JPEGImages")
    }

    /// `<root>/pascal_<split>2007.json`
    pub fn json_path(&self, split: &str) -> PathBuf {
        self.root.join(format!("pascal_{split}2007.json"))
    }

    /// The lesson's JSON for a split (`"train"`, `"val"`, `"test"`).
    pub fn json(&self, split: &str) -> Result<Dataset> {
        Dataset::from_json(self.json_path(split), self.image_dir())
    }

    /// The VOC XML annotations for a split file (`"train"`, `"val"`, `"trainval"`, `"test"`).
    pub fn voc(&self, split: &str) -> Result<Dataset> {
        Dataset::from_voc(self.voc_dir(), split)
    }
}

/// The bundled sample: `$FASTDET_SAMPLE` if set (the GPU bundle sets it), else
/// `data/coco128-voc` of this crate (see its README).
pub fn sample_root() -> PathBuf {
    match std::env::var_os("FASTDET_SAMPLE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => crate::util::crate_root().join("data").join("coco128-voc"),
    }
}

/// `$FASTDET_DATA` if set, else this crate's `data/pascal` if it exists, else [`sample_root`].
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("FASTDET_DATA").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let full = crate::util::crate_root().join("data").join("pascal");
    if full.is_dir() {
        full
    } else {
        sample_root()
    }
}
