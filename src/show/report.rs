//! One self-contained HTML page on a detector's results ([`Report`]): mAP by VOC07, VOC and
//! COCO, the per-class AP table, precision-recall curves, the confusion matrix, a gallery of
//! the worst images and a sample of ground truth beside prediction, pictures embedded. Written
//! by `fastdet eval --report`, `fastdet predict --report`, and shown inline in a notebook.

use super::mistakes::show_image_errors;
use crate::data::Dataset;
use crate::draw::{evcxr_show, Display, Figure};
use crate::error::{Error, Result};
use crate::metrics::ap::fmt_ap;
use crate::metrics::confusion::{confusion, Confusion};
use crate::metrics::{coco_summary, evaluate, ApMetric, ApTable, CocoSummary, Detection};
use base64::Engine;
use std::fmt::Write as _;
use std::path::Path;

/// What the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOpts {
    pub title: String,
    /// Detections scoring below this are left out of the confusion matrix and the pictures
    /// (the mAP uses them all). The lesson's `show_nmf` keeps scores over 0.25.
    pub score_thresh: f32,
    /// Images in the worst-images gallery and in the sample.
    pub n_worst: usize,
    pub n_sample: usize,
    /// Side of each picture's panel.
    pub cell: u32,
    /// PR curves of at most this many classes (those with the most objects).
    pub n_curves: usize,
}

impl Default for ReportOpts {
    fn default() -> Self {
        Self {
            title: "fastdet evaluation".into(),
            score_thresh: 0.25,
            n_worst: 8,
            n_sample: 8,
            cell: 224,
            n_curves: 12,
        }
    }
}

/// A detector's results on a dataset, ready to write as one HTML page.
pub struct Report {
    pub opts: ReportOpts,
    pub n_images: usize,
    pub n_objects: usize,
    pub n_detections: usize,
    /// VOC07, VOC and COCO.
    pub tables: Vec<ApTable>,
    /// COCO's summary beyond the table: AP by object size, AR@1/10/100 (pycocotools' numbers).
    pub coco: CocoSummary,
    pub confusion: Confusion,
    /// Objects found by size and by position ([`Confusion::found_by_size`]).
    pub by_size: Vec<(&'static str, usize, usize)>,
    pub by_position: Vec<(&'static str, usize, usize)>,
    /// Dataset indices of the gallery's images with their captions: by loss when losses were
    /// given, else by errors (false detections plus missed objects).
    pub worst: Vec<(usize, String)>,
    /// Dataset indices of the sample (the first images, in order).
    pub sample: Vec<usize>,
    /// The pictures, PNG-encoded (or why one could not be drawn).
    pub figures: Vec<(String, std::result::Result<Vec<u8>, String>)>,
}

fn png_of(f: Result<Figure>) -> std::result::Result<Vec<u8>, String> {
    f.and_then(|f| f.to_png()).map_err(|e| e.to_string())
}

/// Evaluate `dets` on `ds` and draw everything the report shows. `losses` (one per image of
/// `ds`, e.g. from [`crate::interpret::Interpretation`]) rank the gallery; without them it
/// shows the images with the most errors. Errors: an empty dataset, detections of unknown
/// images or classes (named), losses of the wrong length.
pub fn detection_report(ds: &Dataset, dets: &[Detection], losses: Option<&[f64]>, opts: ReportOpts) -> Result<Report> {
    if ds.is_empty() {
        return Err(Error::Invalid(format!("{}: no images to report on", ds.source.display())));
    }
    if let Some(l) = losses {
        if l.len() != ds.len() {
            return Err(Error::Invalid(format!("report: {} losses for {} images", l.len(), ds.len())));
        }
    }
    let tables = [ApMetric::Voc07, ApMetric::Voc, ApMetric::Coco]
        .into_iter()
        .map(|m| evaluate(ds, dets, m))
        .collect::<Result<Vec<_>>>()?;
    let coco = coco_summary(ds, dets)?;
    let cm = confusion(ds, dets, opts.score_thresh)?;
    let worst: Vec<(usize, String)> = match losses {
        Some(l) => crate::interpret::rank(l, opts.n_worst, true)
            .into_iter()
            .map(|i| (i, format!("loss {:.3}, {} errors", l[i], cm.images[i].n_errors())))
            .collect(),
        None => cm
            .worst_images(opts.n_worst)
            .into_iter()
            .filter(|e| e.n_errors() > 0)
            .map(|e| (e.image, format!("{} errors", e.n_errors())))
            .collect(),
    };
    let sample: Vec<usize> = (0..ds.len()).take(opts.n_sample).collect();
    let mut figures = vec![];
    figures.push(("pr".to_string(), png_of(tables[0].pr_figure(opts.n_curves))));
    figures.push(("confusion".to_string(), png_of(cm.plot())));
    let gallery = |idx: &[usize], caps: Vec<String>| -> std::result::Result<Vec<u8>, String> {
        let errs: Vec<&crate::metrics::ImageErrors> = idx.iter().map(|&i| &cm.images[i]).collect();
        png_of(show_image_errors(ds, &errs, &caps, opts.cell))
    };
    if !worst.is_empty() {
        let idx: Vec<usize> = worst.iter().map(|w| w.0).collect();
        figures.push(("worst".to_string(), gallery(&idx, worst.iter().map(|w| w.1.clone()).collect())));
    }
    if !sample.is_empty() {
        let caps = sample.iter().map(|&i| ds.images[i].file_name.clone()).collect();
        figures.push(("sample".to_string(), gallery(&sample, caps)));
    }
    Ok(Report {
        n_images: ds.len(),
        n_objects: ds.images.iter().flat_map(|r| &r.objects).filter(|o| !o.difficult).count(),
        n_detections: dets.len(),
        tables,
        coco,
        by_size: cm.found_by_size(ds),
        by_position: cm.found_by_position(ds),
        confusion: cm,
        worst,
        sample,
        figures,
        opts,
    })
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The picture `key` of a page's `figures` as an inline `<img>`, or a line saying why it is
/// missing (the evaluation report's and the dataset report's pages).
pub(super) fn img_html(figures: &[(String, std::result::Result<Vec<u8>, String>)], key: &str, alt: &str) -> String {
    match figures.iter().find(|f| f.0 == key).map(|f| &f.1) {
        Some(Ok(png)) => format!(
            "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
            esc(alt),
            base64::engine::general_purpose::STANDARD.encode(png)
        ),
        Some(Err(e)) => format!("<p class=\"empty\">could not draw {}: {}</p>", esc(alt), esc(e)),
        None => format!("<p class=\"empty\">no {}</p>", esc(alt)),
    }
}

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Report({:?}: {} images, {} detections)", self.opts.title, self.n_images, self.n_detections)
    }
}

impl Report {
    fn img(&self, key: &str, alt: &str) -> String {
        img_html(&self.figures, key, alt)
    }

    /// The page: one `<section>` per part (`map`, `per-class`, `pr-curves`, `confusion`,
    /// `worst`, `sample`), every picture inline.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
             body{{font-family:sans-serif;margin:1.5em;max-width:1200px}} table{{border-collapse:collapse}} \
             td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}} th{{background:#eee}} td:first-child{{text-align:left}} \
             img{{max-width:100%}} .empty{{color:#777;font-style:italic}}</style></head><body><h1>{t}</h1>\
             <p>{} images, {} objects (not difficult), {} detections.</p>",
            self.n_images,
            self.n_objects,
            self.n_detections,
            t = esc(&self.opts.title)
        );
        // mAP
        h += "<section id=\"map\"><h2>Mean average precision</h2><table><tr><th>metric</th><th>mAP</th><th>AP50</th><th>AP75</th></tr>";
        for t in &self.tables {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
                t.metric,
                t.map,
                fmt_ap(t.map50),
                fmt_ap(t.map75)
            );
        }
        h += "</table><p>COCO, as pycocotools' summary: ";
        h += &self.coco.rows().iter().map(|(n, v)| format!("{n} {}", fmt_ap(*v))).collect::<Vec<_>>().join(", ");
        h += " (small: objects under 32x32 pixels, large: over 96x96; AR@k: recall with k detections per image and class; - where no object counts).</p></section>";
        // per class
        h += "<section id=\"per-class\"><h2>Per class</h2><table><tr><th>class</th><th>objects</th><th>detections</th>";
        for t in &self.tables {
            let _ = write!(h, "<th>AP {}</th>", t.metric);
        }
        h += "<th>found</th><th>missed</th><th>false detections</th></tr>";
        let nc = self.confusion.classes.len();
        for (c, name) in self.confusion.classes.iter().enumerate() {
            let ca = &self.tables[0].classes[c];
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td>", esc(name), ca.n_gt, ca.n_det);
            for t in &self.tables {
                let _ = write!(h, "<td>{}</td>", fmt_ap(t.classes[c].ap));
            }
            let m = &self.confusion.matrix;
            let _ = write!(h, "<td>{}</td><td>{}</td><td>{}</td></tr>", m[c][c], m[c][nc], m[nc][c]);
        }
        h += "</table><p>Classes without objects have no AP (-) and are left out of the mean.</p>";
        // where objects are missed: by size and by position
        let _ = write!(h, "<h3>Objects found with their class (score at least {}), by size and position</h3><table><tr><th>objects</th><th>found</th><th>of</th><th>recall</th></tr>", self.confusion.score_thresh);
        for (name, found, n) in self.by_size.iter().chain(&self.by_position) {
            let r = if *n > 0 { format!("{:.2}", *found as f64 / *n as f64) } else { "-".into() };
            let _ = write!(h, "<tr><td>{name}</td><td>{found}</td><td>{n}</td><td>{r}</td></tr>");
        }
        h += "</table><p>Size: the square root of the box's area over the image's.</p></section>";
        // PR curves
        h += "<section id=\"pr-curves\"><h2>Precision-recall (VOC07)</h2>";
        if self.tables[0].classes.iter().any(|c| c.ap.is_some()) {
            h += &self.img("pr", "precision-recall curves");
        } else {
            h += "<p class=\"empty\">No class has objects: there are no curves.</p>";
        }
        h += "</section>";
        // confusion
        let _ = write!(
            h,
            "<section id=\"confusion\"><h2>Confusion (detections scoring at least {}, VOC's IoU &gt; 0.5)</h2><p>{}</p>",
            self.confusion.score_thresh,
            esc(&self.confusion.summary())
        );
        h += &self.img("confusion", "confusion matrix");
        let mc = self.confusion.most_confused(10);
        if mc.is_empty() {
            h += "<p class=\"empty\">Nothing confused: every object found with its class, no false detection.</p>";
        } else {
            h += "<h3>Most confused</h3><table><tr><th>actual</th><th>predicted</th><th>count</th></tr>";
            for c in mc {
                let _ =
                    write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&c.actual), esc(&c.predicted), c.count);
            }
            h += "</table>";
        }
        h += "</section>";
        // worst images
        h += "<section id=\"worst\"><h2>Worst images</h2>";
        if self.worst.is_empty() {
            h += "<p class=\"empty\">No image has an error at this threshold.</p>";
        } else {
            h += "<p>Left the ground truth (green found, orange found as another class, red missed), right the detections (green true positive, orange wrong class, purple duplicate, red background).</p>";
            h += &self.img("worst", "worst images");
        }
        h += "</section><section id=\"sample\"><h2>Sample: ground truth beside prediction</h2>";
        h += &self.img("sample", "sample");
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

impl crate::interpret::Interpretation {
    /// The evaluation page of an SSD on its validation images: detections after the lesson's
    /// NMS down to score 0.01 for the mAP, the gallery ranked by each image's loss.
    pub fn report(&self, opts: ReportOpts) -> Result<Report> {
        let dets = self.detections(crate::nms::NmfOpts::evaluation())?;
        let losses: Vec<f64> = (0..self.len()).map(|i| self.total(i)).collect();
        detection_report(&self.ground_truth(), &dets, Some(&losses), opts)
    }
}
