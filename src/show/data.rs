//! Looking at the data before training: the pictures of [`DatasetStats`] (objects and images
//! per class, objects per image, box sizes and aspects, where the centres fall), a seeded grid
//! of random images with their boxes, and the dataset page ([`DataReport`], `fastdet data stats
//! --report`); and the pictures of anchor coverage (the objects no anchor covers, with the anchor
//! that comes nearest).

use super::GRID_COLS;
use crate::anchors::coverage::{Coverage, CoverageTable};
use crate::boxes::BBox;
use crate::data::stats::{DatasetStats, ASPECT_OCTAVES, SIZE_BINS};
use crate::data::Dataset;
use crate::draw::{evcxr_show, Ax, Color, Display, Figure, SET3};
use crate::error::{Error, Result};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::Path;

/// Side of a chart panel.
const PANEL: (u32, u32) = (420, 300);
/// Bar colours: objects, images.
const OBJECTS: Color = Color(31, 119, 180);
const IMAGES: Color = Color(255, 127, 14);

/// Horizontal bars, one per class, named on the left with the count at the bar's end.
fn class_bars(ax: &mut Ax<'_>, title: &str, names: &[String], counts: &[usize], color: Color, width: u32) {
    let (left, top, row) = (120.0f32, 24.0f32, 18.0f32);
    ax.draw_text_lines(2.0, 2.0, title, 13, Color::BLACK, 1);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f32;
    let room = width as f32 - left - 50.0;
    for (i, (name, &n)) in names.iter().zip(counts).enumerate() {
        let y = top + i as f32 * row;
        ax.draw_text_lines(y + 1.0, 2.0, name, 12, Color::BLACK, 1);
        if n > 0 {
            let w = (n as f32 / max * room).max(1.0);
            ax.fill_rect(BBox::new(y + 2.0, left, y + row - 3.0, left + w - 1.0), color);
        }
        let x = left + n as f32 / max * room + 4.0;
        ax.draw_text_lines(y + 1.0, x, &n.to_string(), 12, Color::BLACK, 1);
    }
}

impl DatasetStats {
    /// Objects per class beside images per class, as bars.
    pub fn plot_classes(&self) -> Result<Figure> {
        let width = 380;
        let height = 30 + 18 * self.classes.len().max(1) as u32;
        let mut fig = Figure::grid(1, 2, width, height)?;
        class_bars(&mut fig.ax(0), "objects per class", &self.classes, &self.objects_per_class, OBJECTS, width);
        class_bars(&mut fig.ax(1), "images per class", &self.classes, &self.images_per_class, IMAGES, width);
        Ok(fig)
    }

    /// Images by their number of objects.
    pub fn plot_objects_per_image(&self) -> Result<Figure> {
        let mut fig = Figure::grid(1, 1, PANEL.0, PANEL.1)?;
        let bars: Vec<(f64, f64, f64)> = self
            .objects_per_image
            .iter()
            .enumerate()
            .map(|(n, &c)| (n as f64 - 0.4, n as f64 + 0.4, c as f64))
            .collect();
        fig.ax(0).bar_plot(&bars, "objects in the image", "images", OBJECTS, Some(&|v| format!("{v:.0}")));
        Ok(fig)
    }

    /// The boxes' shapes relative to the image: width, height and aspect-ratio histograms, and
    /// width against height as a heat map (Ultralytics' `labels.jpg` panel).
    pub fn plot_shapes(&self) -> Result<Figure> {
        let mut fig = Figure::grid(1, 4, PANEL.0, PANEL.1)?;
        let hist = |h: &crate::data::stats::Histogram| -> Vec<(f64, f64, f64)> {
            (0..h.counts.len()).map(|i| (h.edges(i).0, h.edges(i).1, h.counts[i] as f64)).collect()
        };
        fig.ax(0).bar_plot(&hist(&self.widths), "width / image width", "objects", OBJECTS, None);
        fig.ax(1).bar_plot(&hist(&self.heights), "height / image height", "objects", OBJECTS, None);
        // log2 of w/h on x, labelled as ratios; the end bins hold everything beyond 1/8 and 8.
        let ratio = |v: f64| {
            let r = 2f64.powf(v);
            let short = |x: f64| if (x - x.round()).abs() < 1e-6 { format!("{x:.0}") } else { format!("{x:.1}") };
            if r >= 1.0 {
                short(r)
            } else {
                format!("1/{}", short(1.0 / r))
            }
        };
        let label = format!("w / h (log scale; ends: beyond 1/{0} and {0})", 2f64.powf(ASPECT_OCTAVES));
        fig.ax(2).bar_plot(&hist(&self.aspects), &label, "objects", OBJECTS, Some(&ratio));
        let n = SIZE_BINS;
        let mut cells = vec![vec![0.0; n]; n];
        for b in &self.boxes {
            let (col, row) = (((b.w * n as f64) as usize).min(n - 1), ((b.h * n as f64) as usize).min(n - 1));
            cells[n - 1 - row][col] += 1.0; // tallest at the top
        }
        fig.ax(3).heat_map(&cells, (0.0, 1.0), (1.0, 0.0), "width / image width", "height / image height");
        Ok(fig)
    }

    /// Where the boxes' centres fall in the image (row 0 at the top, as in the image).
    pub fn plot_centres(&self) -> Result<Figure> {
        let mut fig = Figure::grid(1, 1, PANEL.1 + 40, PANEL.1)?;
        let cells: Vec<Vec<f64>> = self.centres.iter().map(|r| r.iter().map(|&c| c as f64).collect()).collect();
        fig.ax(0).heat_map(&cells, (0.0, 1.0), (0.0, 1.0), "centre x / width", "centre y / height");
        Ok(fig)
    }

    /// In a notebook: the summary as text.
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Text(self.to_string()));
    }
}

/// `n` images of `ds` drawn at random (seeded, without repeats) with all their boxes (difficult
/// ones too) named by class, [`GRID_COLS`] wide, each in a `cell`-pixel panel.
pub fn show_random_images(ds: &Dataset, n: usize, seed: u64, cell: u32) -> Result<Figure> {
    let n = n.min(ds.len());
    if n == 0 {
        return Err(Error::Draw(format!("{}: no images to show", ds.source.display())));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let picks = rand::seq::index::sample(&mut rng, ds.len(), n).into_vec();
    let mut fig = Figure::for_items(n, GRID_COLS, cell)?;
    for (k, &i) in picks.iter().enumerate() {
        let im = ds.image(i)?;
        let mut ax = fig.ax(k);
        ax.show_img(&im);
        for (j, o) in ds.images[i].objects.iter().enumerate() {
            let name = ds.classes.get(o.class).map(String::as_str).unwrap_or("?");
            ax.draw_labelled(o.bbox, name, 12, SET3[j % SET3.len()]);
        }
    }
    Ok(fig)
}

/// What the dataset page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DataReportOpts {
    pub title: String,
    /// The training size: tiny boxes are counted at it.
    pub sz: u32,
    /// Random images in the grid, drawn with this seed.
    pub n_images: usize,
    pub seed: u64,
    pub cell: u32,
}

impl DataReportOpts {
    pub fn new(sz: u32) -> Self {
        Self { title: "fastdet dataset".into(), sz, n_images: 12, seed: 0, cell: 224 }
    }
}

/// A dataset's statistics and pictures, ready to write as one HTML page.
pub struct DataReport {
    pub opts: DataReportOpts,
    pub stats: DatasetStats,
    /// The pictures, PNG-encoded (or why one could not be drawn), by key: `classes`,
    /// `objects-per-image`, `shapes`, `centres`, `images`.
    pub figures: Vec<(String, std::result::Result<Vec<u8>, String>)>,
}

impl std::fmt::Debug for DataReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataReport({:?}: {} images, {} objects)", self.opts.title, self.stats.n_images, self.stats.n_objects)
    }
}

/// The statistics of `ds` at training size `sz` and their pictures, with 12 random images drawn
/// with seed 0 ([`dataset_report_with`] for other settings).
pub fn dataset_report(ds: &Dataset, sz: u32) -> Result<DataReport> {
    dataset_report_with(ds, DataReportOpts { title: format!("{}", ds.source.display()), ..DataReportOpts::new(sz) })
}

/// [`dataset_report`] with its settings. Errors: an empty dataset, the statistics' errors.
pub fn dataset_report_with(ds: &Dataset, opts: DataReportOpts) -> Result<DataReport> {
    if ds.is_empty() {
        return Err(Error::Invalid(format!("{}: no images to report on", ds.source.display())));
    }
    let stats = DatasetStats::new(ds, opts.sz)?;
    let png = |f: Result<Figure>| f.and_then(|f| f.to_png()).map_err(|e| e.to_string());
    let figures = vec![
        ("classes".to_string(), png(stats.plot_classes())),
        ("objects-per-image".to_string(), png(stats.plot_objects_per_image())),
        ("shapes".to_string(), png(stats.plot_shapes())),
        ("centres".to_string(), png(stats.plot_centres())),
        ("images".to_string(), png(show_random_images(ds, opts.n_images, opts.seed, opts.cell))),
    ];
    Ok(DataReport { opts, stats, figures })
}

use super::report::{esc, img_html};

impl DataReport {
    /// The picture `key` as an inline `<img>` (or why it is missing).
    fn img(&self, key: &str, alt: &str) -> String {
        img_html(&self.figures, key, alt)
    }

    /// The page: one `<section>` per part (`summary`, `classes`, `objects-per-image`, `shapes`,
    /// `centres`, `tiny-and-border`, `images`), every picture inline; the style of the
    /// evaluation report ([`super::Report`]).
    pub fn to_html(&self) -> String {
        let s = &self.stats;
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
             body{{font-family:sans-serif;margin:1.5em;max-width:1200px}} table{{border-collapse:collapse}} \
             td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}} th{{background:#eee}} td:first-child{{text-align:left}} \
             img{{max-width:100%}} .empty{{color:#777;font-style:italic}}</style></head><body><h1>{t}</h1>",
            t = esc(&self.opts.title)
        );
        let (mw, mh) = s.median_size();
        let _ = write!(
            h,
            "<section id=\"summary\"><h2>Summary</h2><table>\
             <tr><td>images</td><td>{}</td></tr><tr><td>objects</td><td>{}</td></tr>\
             <tr><td>difficult objects</td><td>{}</td></tr><tr><td>images without objects</td><td>{}</td></tr>\
             <tr><td>objects per image (mean, max)</td><td>{:.2}, {}</td></tr>\
             <tr><td>median box (w x h, of the image)</td><td>{:.3} x {:.3}</td></tr>\
             <tr><td>tiny boxes (under {} px at {} px)</td><td>{}</td></tr>\
             <tr><td>boxes touching the border</td><td>{}</td></tr></table></section>",
            s.n_images,
            s.n_objects,
            s.n_difficult,
            s.empty_images(),
            s.mean_objects_per_image(),
            s.max_objects_per_image(),
            mw,
            mh,
            crate::data::stats::TINY_PX,
            s.sz,
            s.tiny.len(),
            s.touching_border.len()
        );
        h += "<section id=\"classes\"><h2>Objects and images per class</h2><table><tr><th>class</th><th>images</th><th>objects</th></tr>";
        for (c, name) in s.classes.iter().enumerate() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                s.images_per_class[c],
                s.objects_per_class[c]
            );
        }
        h += "</table>";
        h += &self.img("classes", "objects and images per class");
        h += "</section><section id=\"objects-per-image\"><h2>Objects per image</h2>";
        h += &self.img("objects-per-image", "objects per image");
        h += "</section><section id=\"shapes\"><h2>Box sizes and aspect ratios, relative to the image</h2>\
              <p>Sizes are fractions of the image's side: what the SSD sees once the image is squashed to a square.</p>";
        h += &self.img("shapes", "box shapes");
        h += "</section><section id=\"centres\"><h2>Where the box centres fall</h2>";
        h += &self.img("centres", "box centres");
        let _ = write!(
            h,
            "</section><section id=\"tiny-and-border\"><h2>Tiny boxes and boxes touching the border</h2>\
             <p>{} boxes are under {} px wide or high at {} px; {} touch the image's border (within a pixel).</p>",
            s.tiny.len(),
            crate::data::stats::TINY_PX,
            s.sz,
            s.touching_border.len()
        );
        h += "</section><section id=\"images\"><h2>Random images with their boxes</h2>";
        let _ = write!(h, "<p>{} images drawn with seed {}.</p>", self.opts.n_images.min(s.n_images), self.opts.seed);
        h += &self.img("images", "random images");
        h += "</section></body></html>\n";
        h
    }

    /// Write the page (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::util::write_atomic(path.as_ref(), self.to_html().as_bytes())
    }

    /// In a notebook: the page inline.
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Html(self.to_html()));
    }
}

// ---------------------------------------------------------------------------------------------
// Anchor coverage

/// Object boxes in red, their nearest anchor in yellow.
const OBJECT: Color = Color(255, 60, 60);
const ANCHOR: Color = Color(255, 220, 40);

impl Coverage {
    /// The `n` worst-covered objects no anchor covers, each on its image squashed to `sz x sz`
    /// (as the SSD sees it): the object in red, the anchor that overlaps it most in yellow, and
    /// their IoU. `ds` is the dataset the coverage was computed on. Errors: every object covered.
    pub fn plot_uncovered(&self, ds: &Dataset, sz: u32, n: usize) -> Result<Figure> {
        let worst: Vec<_> = self.uncovered().into_iter().take(n).collect();
        if worst.is_empty() {
            return Err(Error::Draw(format!(
                "every one of the {} objects has an anchor over {}: nothing uncovered to show",
                self.objects.len(),
                self.threshold
            )));
        }
        let mut fig = Figure::for_items(worst.len(), GRID_COLS, sz)?;
        let s = sz as f32;
        for (k, o) in worst.iter().enumerate() {
            let im = ds.image(o.object.image)?;
            let im: RgbImage = image::imageops::resize(&im, sz, sz, image::imageops::FilterType::Triangle);
            let mut ax = fig.ax(k);
            ax.show_img(&im);
            ax.draw_rect(self.anchor_bbox(o, s), ANCHOR);
            ax.draw_rect(BBox::from_unit_corners(o.object.corners, s), OBJECT);
            let name = ds.images[o.object.image].objects.get(o.object.object).map(|ob| ds.class_name(ob.class));
            let txt = format!("{} IoU {:.2}", name.unwrap_or("?"), o.best_iou);
            ax.draw_text_lines(2.0, 2.0, &txt, 13, Color::WHITE, 1);
        }
        Ok(fig)
    }

    /// In a notebook: the coverage as text.
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Text(self.to_string()));
    }
}

impl CoverageTable {
    /// The table as HTML (header and one row per config).
    pub fn to_html(&self) -> String {
        let (header, rows) = self.cells();
        let mut h = String::from("<table><tr>");
        for c in header {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h += "</tr>";
        for r in rows {
            h += "<tr>";
            for c in r {
                let _ = write!(h, "<td>{}</td>", esc(&c));
            }
            h += "</tr>";
        }
        h + "</table>"
    }

    /// In a notebook: the table.
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Html(self.to_html()));
    }
}
