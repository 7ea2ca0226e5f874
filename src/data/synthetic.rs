//! A synthetic detection set, generated and seeded: shapes of a few classes on textured
//! backgrounds, written in VOC layout (JPEGs, XML, split files) with the lesson's JSON beside.
//!
//! It is what lets a detector be *seen* learning on a CPU in minutes, with no download: the
//! shapes are easy, the boxes exact, and the same seed writes the same files.

use super::{Dataset, ImageRecord, Object, Pascal};
use crate::boxes::BBox;
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use plotters::backend::{BitMapBackend, DrawingBackend};
use plotters::style::RGBColor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The shapes, in class order.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];

/// What to generate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticConfig {
    pub n_train: usize,
    pub n_val: usize,
    /// Images are `size x size` pixels.
    pub size: u32,
    /// Objects per image: 1 to `max_objects`.
    pub max_objects: usize,
    /// Shape sizes, as fractions of the image side.
    pub min_frac: f32,
    pub max_frac: f32,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self { n_train: 800, n_val: 200, size: 128, max_objects: 3, min_frac: 0.15, max_frac: 0.5, seed: 0 }
    }
}

/// Bumped whenever the same config and seed would draw other pixels (a cached set made by an
/// older fastdet is then written again instead of being reused).
pub const DRAWING_VERSION: u32 = 2;

/// Shapes of one image overlap at most this much (IoU of their boxes, VOC's `+1` areas).
const MAX_OVERLAP: f64 = 0.1;

/// A textured background: a colour gradient with stripes and noise.
fn background(rng: &mut ChaCha8Rng, size: u32) -> RgbImage {
    let c0: [f32; 3] = [rng.random_range(40.0..200.0), rng.random_range(40.0..200.0), rng.random_range(40.0..200.0)];
    let c1: [f32; 3] = [rng.random_range(40.0..200.0), rng.random_range(40.0..200.0), rng.random_range(40.0..200.0)];
    let (freq, angle, amp) =
        (rng.random_range(0.05..0.4f32), rng.random_range(0.0..std::f32::consts::PI), rng.random_range(0.0..30.0f32));
    let (sa, ca) = angle.sin_cos();
    let mut img = RgbImage::new(size, size);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let t = (x + y) as f32 / (2 * size) as f32;
        let stripe = ((x as f32 * ca + y as f32 * sa) * freq).sin() * amp;
        let noise: f32 = rng.random_range(-12.0..12.0);
        let v = |k: usize| (c0[k] * (1.0 - t) + c1[k] * t + stripe + noise).clamp(0.0, 255.0) as u8;
        *p = Rgb([v(0), v(1), v(2)]);
    }
    img
}

/// Draw one shape filling (as far as the shape allows) the box; returns the shape's exact box.
/// plotters draws it (the crate fastdet plots with), straight into the image's pixels.
fn draw_shape(img: &mut RgbImage, class: usize, left: i32, top: i32, side: i32, color: Rgb<u8>) -> BBox {
    let (w, h) = img.dimensions();
    let mut canvas = BitMapBackend::with_buffer(img.as_mut(), (w, h));
    let c = RGBColor(color[0], color[1], color[2]);
    // Drawing into a buffer of the right size cannot fail; the box is the shape's either way.
    let (right, bottom) = (left + side - 1, top + side - 1);
    match class {
        0 => {
            let r = (side - 1) / 2; // the disc covers 2r + 1 <= side pixels
            let (cx, cy) = (left + r, top + r);
            let _ = canvas.draw_circle((cx, cy), r as u32, &c, true);
            BBox::new((cy - r) as f32, (cx - r) as f32, (cy + r) as f32, (cx + r) as f32)
        }
        1 => {
            let _ = canvas.draw_rect((left, top), (right, bottom), &c, true);
            BBox::new(top as f32, left as f32, bottom as f32, right as f32)
        }
        _ => {
            let _ = canvas.fill_polygon([(left + side / 2, top), (right, bottom), (left, bottom)], &c);
            BBox::new(top as f32, left as f32, bottom as f32, right as f32)
        }
    }
}

/// One image and its objects.
fn sample(rng: &mut ChaCha8Rng, cfg: &SyntheticConfig) -> (RgbImage, Vec<Object>) {
    let mut img = background(rng, cfg.size);
    let mut objects: Vec<Object> = vec![];
    let n = rng.random_range(1..=cfg.max_objects.max(1));
    let s = cfg.size as f32;
    for _ in 0..n {
        // A few tries to place a shape that overlaps the others little.
        for _ in 0..20 {
            let side = (rng.random_range(cfg.min_frac..=cfg.max_frac) * s).round().max(4.0) as i32;
            let left = rng.random_range(0..=(cfg.size as i32 - side).max(0));
            let top = rng.random_range(0..=(cfg.size as i32 - side).max(0));
            let cand = BBox::new(top as f32, left as f32, (top + side - 1) as f32, (left + side - 1) as f32);
            if objects.iter().any(|o| o.bbox.pixel_iou(&cand) > MAX_OVERLAP) {
                continue;
            }
            let class = rng.random_range(0..SHAPES.len());
            let color = Rgb([rng.random_range(0..=255), rng.random_range(0..=255), rng.random_range(0..=255)]);
            let bbox = draw_shape(&mut img, class, left, top, side, color);
            objects.push(Object { bbox, class, difficult: false });
            break;
        }
    }
    (img, objects)
}

fn xml(file_name: &str, size: u32, objects: &[Object]) -> String {
    let mut s = format!(
        "<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{file_name}</filename>\n\t<source><database>fastdet synthetic shapes</database></source>\n\t<size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n\t<segmented>0</segmented>\n"
    );
    for o in objects {
        let [xmin, ymin, xmax, ymax] = o.bbox.to_voc();
        s += &format!(
            "\t<object>\n\t\t<name>{}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n\t</object>\n",
            SHAPES[o.class]
        );
    }
    s + "</annotation>\n"
}

/// Write the set under `root` (the lesson's layout: `VOCdevkit/VOC2007/...` and
/// `pascal_{train,val}2007.json`) and open it. Image ids are 1..; train images come first.
pub fn write(root: impl AsRef<Path>, cfg: &SyntheticConfig) -> Result<Pascal> {
    let root = root.as_ref();
    if cfg.size < 16 || cfg.n_train == 0 || !(0.0 < cfg.min_frac && cfg.min_frac <= cfg.max_frac && cfg.max_frac <= 1.0)
    {
        return Err(Error::Invalid(format!("synthetic set: a config that makes no sense: {cfg:?}")));
    }
    let voc = root.join("VOCdevkit").join("VOC2007");
    for d in ["JPEGImages", "Annotations", "ImageSets/Main"] {
        std::fs::create_dir_all(voc.join(d)).map_err(|e| Error::io(voc.join(d), e))?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let classes: Vec<String> = SHAPES.iter().map(|s| s.to_string()).collect();
    let mut splits = vec![];
    for (split, n, first) in [("train", cfg.n_train, 1), ("val", cfg.n_val, cfg.n_train + 1)] {
        let mut ds = Dataset {
            source: voc.join("ImageSets/Main").join(format!("{split}.txt")),
            image_dir: voc.join("JPEGImages"),
            classes: classes.clone(),
            category_ids: vec![],
            images: vec![],
            warnings: vec![],
        };
        let mut list = String::new();
        for id in first..first + n {
            let (img, objects) = sample(&mut rng, cfg);
            let stem = format!("{id:06}");
            let file_name = format!("{stem}.jpg");
            let path = ds.image_dir.join(&file_name);
            img.save_with_format(&path, image::ImageFormat::Jpeg).map_err(|e| Error::Image {
                path: path.clone(),
                image: stem.clone(),
                problem: format!("cannot write: {e}"),
            })?;
            let xml_path = voc.join("Annotations").join(format!("{stem}.xml"));
            std::fs::write(&xml_path, xml(&file_name, cfg.size, &objects)).map_err(|e| Error::io(&xml_path, e))?;
            list += &format!("{stem}\n");
            ds.images.push(ImageRecord { id: id as u64, file_name, width: cfg.size, height: cfg.size, objects });
        }
        std::fs::write(&ds.source, list).map_err(|e| Error::io(&ds.source, e))?;
        ds.save_json(root.join(format!("pascal_{split}2007.json")))?;
        splits.push(ds);
    }
    Pascal::open(root)
}

/// The set of `cfg` in the per-user cache (a folder named by every field of `cfg`),
/// written the first time and opened after that: what the notebooks train on when VOC2007 is
/// absent.
pub fn cached(cfg: &SyntheticConfig) -> Result<Pascal> {
    let c = cfg;
    let name = format!(
        "shapes-v{DRAWING_VERSION}-{}px-{}-{}-max{}-{}-{}-seed{}",
        c.size, c.n_train, c.n_val, c.max_objects, c.min_frac, c.max_frac, c.seed
    );
    let dir = crate::util::cache_dir().join(name);
    if dir.join("pascal_val2007.json").is_file() {
        Pascal::open(&dir)
    } else {
        write(&dir, cfg)
    }
}
