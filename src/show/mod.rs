//! The display layer: pictures and notebook displays of the crate's own types, drawn with
//! [`crate::draw`]. Everything a notebook user looks at is here — samples, batches, anchors,
//! predictions, SSD results before and after NMS, loss and learning-rate curves, AP tables and
//! precision-recall curves — as free functions (`show_*`, lesson names) and as `impl` blocks on
//! the domain types (`Anchors::show`, `Recorder::plot`, `LrFind::plot`, `ApTable::pr_figure`,
//! `evcxr_display`). No domain module imports this one; it imports them.

pub mod data;
pub mod live;
pub mod mistakes;
pub mod report;

pub use data::{dataset_report, dataset_report_with, show_random_images, DataReport, DataReportOpts};
pub use mistakes::{show_image_errors, show_ssd_errors, show_truth_vs_prediction};
pub use report::{detection_report, Report, ReportOpts};

use crate::anchors::Anchors;
use crate::boxes::BBox;
use crate::data::{Batch, BatchTarget, Dataset};
use crate::draw::{draw_im, evcxr_show, Color, Display, Figure, Mark, Series, LESSON_TICKS};
use crate::error::{Error, Result};
use crate::learner::{FitReport, LrFind, Recorder, Summary};
use crate::metrics::ap::{fmt_ap, ApMetric, ApTable, ClassAp};
use crate::metrics::Detection;
use crate::model::loss::{check_output, Loss};
use crate::model::ssd::Matching;
use crate::model::ssd_loss::{lost_objects, match_anchors};
use crate::model::{ModelOutput, ModelSpec};
use crate::nms::NmfOpts;
use crate::transforms::Augmented;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A multi-hot target counts a class as present above this (targets are 0 or 1).
const MULTI_HOT_ON: f32 = 0.5;
/// Multi-label predictions show the classes whose probability is over this (the lesson's 0.4).
pub const MULTILABEL_SHOW_THRESH: f32 = 0.4;
/// Side of a chart panel for one curve.
const CURVE_PANEL: (u32, u32) = (420, 300);

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

// ---------------------------------------------------------------------------------------------
// Data

/// The lesson's `draw_idx(i)`: image `i` of a dataset with its (non-difficult) objects.
pub fn draw_idx(ds: &Dataset, i: usize) -> Result<Figure> {
    let im = ds.image(i)?;
    Ok(draw_im(&im, &ds.annotations(i), &ds.classes))
}

/// A grid of augmented samples with their boxes (white, as the lesson draws them), `cols` wide.
pub fn show_augmented(samples: &[Augmented], cols: u32) -> Result<Figure> {
    let mut fig = Figure::for_items(samples.len(), cols, samples.first().map(|s| s.sz).unwrap_or(1))?;
    for (i, s) in samples.iter().enumerate() {
        let mut ax = fig.ax(i);
        ax.show_img(&s.to_rgb());
        s.boxes.iter().for_each(|&b| {
            ax.draw_rect(b, Color::WHITE);
        });
    }
    Ok(fig)
}

/// A batch from a loader, denormalised, with its boxes and class names (`show_ground_truth`
/// colours): the first `n` images, [`GRID_COLS`] wide (the lesson's 3x4 grids: `n = 12`).
/// Classification targets show the class name in the corner.
pub fn show_batch(batch: &Batch, classes: &[String], n: usize) -> Result<Figure> {
    let images = batch.images()?;
    let n = n.clamp(1, images.len().max(1));
    let mut fig = Figure::for_items(n, GRID_COLS, images.first().map(|i| i.width()).unwrap_or(1))?;
    for (i, im) in images.iter().take(n).enumerate() {
        let objects = batch.objects(i)?;
        let boxes: Vec<BBox> = objects.iter().map(|o| o.0).collect();
        let clas: Vec<usize> = objects.iter().map(|o| o.1.unwrap_or(classes.len())).collect();
        let mut ax = fig.ax(i);
        // Lesson 9's pictures (all the boxes) have its grid; lesson 8's do not.
        if matches!(batch.y, BatchTarget::Boxes { .. }) {
            ax.show_ground_truth(im, &boxes, Some(&clas), None, 0.0, classes);
        } else {
            ax.show_img(im).draw_ground_truth(&boxes, Some(&clas), None, 0.0, classes);
        }
        let names = match &batch.y {
            BatchTarget::Class(t) => vec![i64::try_from(t.get(i as i64))? as usize],
            BatchTarget::MultiLabel(t) => {
                let v: Vec<f32> = Vec::try_from(t.get(i as i64))?;
                v.iter().enumerate().filter(|(_, &p)| p > MULTI_HOT_ON).map(|(c, _)| c).collect()
            }
            _ => vec![],
        };
        if !names.is_empty() {
            let txt =
                names.iter().map(|&c| classes.get(c).map(String::as_str).unwrap_or("?")).collect::<Vec<_>>().join(" ");
            ax.draw_text(2.0, 2.0, &txt, 14, Color::WHITE);
        }
    }
    Ok(fig)
}

// ---------------------------------------------------------------------------------------------
// Predictions

/// Model outputs drawn on their batch's images, `cols` wide, decoded the way `loss` reads them:
/// class names for a classifier (`CrossEntropy`), the box for `head_reg4` (`L1`), box and class
/// for the single-object detector (`Detn`), classes with probability over
/// [`MULTILABEL_SHOW_THRESH`] for multi-label (`Bce`, as the lesson shows them). The first `n`
/// images, [`GRID_COLS`] wide (the lesson's `plt.subplots(3, 4)`: `n = 12`).
pub fn show_predictions(batch: &Batch, out: &ModelOutput, model: &impl AsRef<ModelSpec>, n: usize) -> Result<Figure> {
    let spec = model.as_ref();
    let (loss, classes) = (&spec.loss, &spec.classes);
    let images = batch.images()?;
    let n = n.clamp(1, images.len().max(1));
    let mut fig = Figure::for_items(n, GRID_COLS, images.first().map(|i| i.width()).unwrap_or(1))?;
    check_output("show_predictions", out, &batch.y)?;
    // One row per image in the lesson's layout (the single-object detector's 4 + C).
    let out = out.packed().to_device(Device::Cpu).to_kind(Kind::Float);
    let name = |c: usize| classes.get(c).cloned().unwrap_or_else(|| "?".into());
    for (i, im) in images.iter().take(n).enumerate() {
        let row: Vec<f32> = Vec::try_from(out.get(i as i64))?;
        let mut ax = fig.ax(i);
        ax.show_img(im);
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(c, _)| c).unwrap_or(0);
        match loss {
            Loss::CrossEntropy => {
                ax.draw_text(2.0, 2.0, &name(argmax(&row)), 14, Color::WHITE);
            }
            Loss::L1 => {
                ax.draw_rect(BBox::from_array([row[0], row[1], row[2], row[3]]), Color::WHITE);
            }
            Loss::Detn { sz, .. } => {
                let s = |v: f32| sigmoid(v) * *sz as f32;
                let b = BBox::from_array([s(row[0]), s(row[1]), s(row[2]), s(row[3])]);
                ax.draw_labelled(b, &name(argmax(&row[4..])), 14, Color::WHITE);
            }
            Loss::Ssd { .. } => {
                // Many boxes per image: show_results and show_nmf draw them.
                ax.draw_text(2.0, 2.0, "SSD: use show_results or show_nmf", 12, Color::WHITE);
            }
            Loss::Bce => {
                let names: Vec<String> = row
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| sigmoid(v) > MULTILABEL_SHOW_THRESH)
                    .map(|(c, _)| name(c))
                    .collect();
                ax.draw_text(2.0, 2.0, &names.join(" "), 14, Color::WHITE);
            }
        }
    }
    Ok(fig)
}

// ---------------------------------------------------------------------------------------------
// SSD

/// Which anchors' boxes a results grid draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Probability over this value (the lesson's `torch_gt(..., 0.01)` and `0.21` grids).
    Above(f32),
    /// Probability over this fraction of the image's highest (the lesson's `plot_results(0.75)`).
    OfBest(f32),
}

/// Panels per row of the lesson's result grids (`plt.subplots(3, 4)`).
pub const GRID_COLS: u32 = 4;

/// Lesson 9's result grids for the first `n` images of a batch (12 in the lesson: 3 rows of
/// [`GRID_COLS`]): each anchor's box ([`crate::anchors::actn_to_bb`]) with its most likely
/// class over all `C + 1` columns (`bg` for background) and that probability, drawn where the
/// probability passes `thresh`. `out` is an SSD's output on the batch.
pub fn show_results(
    batch: &Batch,
    out: &ModelOutput,
    model: &impl AsRef<ModelSpec>,
    thresh: Threshold,
    n: usize,
) -> Result<Figure> {
    let spec = model.as_ref();
    let decoded = spec.decode(out)?;
    let classes = &spec.classes;
    let images = batch.images()?;
    let n = n.clamp(1, images.len().max(1));
    let cell = images.first().map(|i| i.width()).unwrap_or(1).max(1);
    let mut fig = Figure::for_items(n, GRID_COLS, cell)?;
    for (i, (im, d)) in images.iter().zip(decoded).take(n).enumerate() {
        let (clas, prs) = d.best()?;
        let cut = match thresh {
            Threshold::Above(t) => t,
            Threshold::OfBest(f) => prs.iter().copied().fold(0f32, f32::max) * f,
        };
        let boxes = d.bboxes(im.width() as f32)?;
        fig.ax(i).show_ground_truth(im, &boxes, Some(&clas), Some(&prs), cut, classes);
    }
    Ok(fig)
}

/// Lesson 9's "testing" pictures of image `idx` of a batch, side by side: its ground truth;
/// the anchors labelled with the model's most likely class (`b_clasi.max(1)[1]`, `bg` included);
/// the boxes the model moves the anchors to ([`crate::anchors::actn_to_bb`]) with that class and
/// its probability, all of them (threshold 0). [`anchor_prediction_steps`] gives them one by one.
pub fn show_anchor_predictions(
    batch: &Batch,
    out: &ModelOutput,
    model: &impl AsRef<ModelSpec>,
    idx: usize,
) -> Result<Figure> {
    let classes = &model.as_ref().classes;
    let steps = AnchorSteps::of(batch, out, model.as_ref(), idx)?;
    let mut fig = Figure::grid(1, 3, steps.im.width(), steps.im.height())?;
    for k in 0..3 {
        steps.draw(&mut fig, k, k, classes);
    }
    Ok(fig)
}

/// [`show_anchor_predictions`]'s three pictures as the lesson shows them, one after another,
/// each with its caption: `for (caption, fig) in anchor_prediction_steps(..)? { println!("{caption}"); display(&fig); }`.
pub fn anchor_prediction_steps(
    batch: &Batch,
    out: &ModelOutput,
    model: &impl AsRef<ModelSpec>,
    idx: usize,
) -> Result<Vec<(String, Figure)>> {
    let classes = &model.as_ref().classes;
    let steps = AnchorSteps::of(batch, out, model.as_ref(), idx)?;
    let captions = [
        format!("the ground truth of image {idx}"),
        format!(
            "the {} anchors, each labelled with the model's most likely class (bg: background)",
            steps.anchors.len()
        ),
        "the boxes the activations move the anchors to (actn_to_bb), with that class and its probability".to_string(),
    ];
    captions
        .into_iter()
        .enumerate()
        .map(|(k, caption)| {
            let mut fig = Figure::grid(1, 1, steps.im.width(), steps.im.height())?;
            steps.draw(&mut fig, 0, k, classes);
            Ok((caption, fig))
        })
        .collect()
}

/// What [`show_anchor_predictions`] draws, computed once.
struct AnchorSteps {
    im: RgbImage,
    gt: Vec<BBox>,
    gt_clas: Vec<usize>,
    anchors: Vec<BBox>,
    boxes: Vec<BBox>,
    clas: Vec<usize>,
    prs: Vec<f32>,
}

impl AnchorSteps {
    fn of(batch: &Batch, out: &ModelOutput, spec: &ModelSpec, idx: usize) -> Result<Self> {
        let classes = &spec.classes;
        let cfg = spec.ssd_config("show_anchor_predictions")?;
        let anchors = Anchors::new(&cfg.anchors, Device::Cpu);
        let mut images = batch.images()?;
        if idx >= images.len() {
            return Err(Error::Invalid(format!("show_anchor_predictions: image {idx} of a batch of {}", images.len())));
        }
        let im = images.swap_remove(idx);
        let sz = im.width() as f32;
        let d = spec
            .decode(out)?
            .into_iter()
            .nth(idx)
            .ok_or_else(|| Error::Invalid(format!("no output for image {idx}")))?;
        let (clas, prs) = d.best()?;
        let objects = batch.objects(idx)?;
        Ok(AnchorSteps {
            gt: objects.iter().map(|o| o.0).collect(),
            gt_clas: objects.iter().map(|o| o.1.unwrap_or(classes.len())).collect(),
            anchors: anchors.to_bboxes(sz)?,
            boxes: d.bboxes(sz)?,
            clas,
            prs,
            im,
        })
    }

    /// Step `k` (0 ground truth, 1 anchors, 2 moved boxes) into panel `panel` of `fig`.
    fn draw(&self, fig: &mut Figure, panel: usize, k: usize, classes: &[String]) {
        let (boxes, clas, prs) = match k {
            0 => (&self.gt, &self.gt_clas, None),
            1 => (&self.anchors, &self.clas, None),
            _ => (&self.boxes, &self.clas, Some(&self.prs[..])),
        };
        fig.ax(panel).show_ground_truth(&self.im, boxes, Some(clas), prs, 0.0, classes);
    }
}

/// The lesson's `show_nmf` for the first `n` images of a batch: each image with its detections
/// after the lesson's post-processing ([`crate::nms::nms_detections`]: per class, scores over
/// `opts.thresh`, NMS), boxes, classes and scores drawn as `show_ground_truth` does, 4 panels
/// wide. `out` is an SSD's output on the batch.
pub fn show_nmf(
    batch: &Batch,
    out: &ModelOutput,
    model: &impl AsRef<ModelSpec>,
    opts: NmfOpts,
    n: usize,
) -> Result<Figure> {
    let spec = model.as_ref();
    let classes = &spec.classes;
    let images = batch.images()?;
    let n = n.min(images.len()).max(1);
    let sz = images.first().map(|i| i.width()).unwrap_or(1);
    let mut fig = Figure::for_items(n, 4, sz)?;
    let found = spec.detections(out, opts, n)?;
    for (i, (im, dets)) in images.iter().zip(found).enumerate() {
        let b: Vec<BBox> = dets.iter().map(|d| d.bbox).collect();
        let c: Vec<usize> = dets.iter().map(|d| d.class).collect();
        let p: Vec<f32> = dets.iter().map(|d| d.score).collect();
        fig.ax(i).show_ground_truth(im, &b, Some(&c), Some(&p), 0.0, classes);
    }
    Ok(fig)
}

/// One image of a dataset with its detections (boxes, classes and scores as
/// `show_ground_truth` draws them), at the image's own size.
pub fn show_detections(ds: &Dataset, i: usize, dets: &[Detection]) -> Result<Figure> {
    let rec = &ds.images[i];
    let mine: Vec<&Detection> = dets.iter().filter(|d| d.image_id == rec.id).collect();
    let boxes: Vec<BBox> = mine.iter().map(|d| d.bbox).collect();
    let clas: Vec<usize> = mine.iter().map(|d| d.class).collect();
    let prs: Vec<f32> = mine.iter().map(|d| d.score).collect();
    let im = ds.image(i)?;
    let mut fig = Figure::single(im.width(), im.height());
    fig.ax(0).show_ground_truth(&im, &boxes, Some(&clas), Some(&prs), 0.0, &ds.classes);
    Ok(fig)
}

/// [`show_detections`] for every image of `ds`, saved as `<dir>/<image file stem>.png`.
pub fn save_detections(ds: &Dataset, dets: &[Detection], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    for (i, rec) in ds.images.iter().enumerate() {
        let stem = Path::new(&rec.file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or(rec.id.to_string());
        show_detections(ds, i, dets)?.save_png(dir.join(format!("{stem}.png")))?;
    }
    Ok(())
}

/// The lesson's matching beside the fixed one on one image: the ground truth boxes (left), then
/// for each [`Matching`] the anchors that become positives, labelled with the class they must
/// predict; an object the matching loses is drawn in red with "lost". `gt` are pixel boxes of the
/// `sz x sz` image `im`, `clas` their classes.
pub fn show_matchings(
    im: &RgbImage,
    gt: &[BBox],
    clas: &[usize],
    anchors: &Anchors,
    pos_iou: f64,
    classes: &[String],
) -> Result<Figure> {
    let sz = im.width() as f32;
    let anc = anchors.to_bboxes(sz)?;
    let unit: Vec<BBox> = gt.iter().map(|b| BBox::from_array(b.to_array().map(|v| v / sz))).collect();
    let ov = crate::boxes::iou_matrix(&unit, &anchors.to_bboxes(1.0)?);
    let mut fig = Figure::grid(1, 3, im.width(), im.height())?;
    fig.ax(0).show_ground_truth(im, gt, Some(clas), None, 0.0, classes);
    for (k, m) in [Matching::Lesson, Matching::NoGtLost].into_iter().enumerate() {
        let (o, idx) = match_anchors(&ov.data, gt.len(), anc.len(), m)?;
        let pos: Vec<usize> = (0..anc.len()).filter(|&a| o[a] as f64 > pos_iou).collect();
        let boxes: Vec<BBox> = pos.iter().map(|&a| anc[a]).collect();
        let cls: Vec<usize> = pos.iter().map(|&a| clas[idx[a] as usize]).collect();
        let mut ax = fig.ax(k + 1);
        ax.show_ground_truth(im, &boxes, Some(&cls), None, 0.0, classes);
        for g in lost_objects(&ov.data, gt.len(), anc.len(), m, pos_iou)? {
            ax.draw_labelled(
                gt[g],
                &format!("lost: {}", classes.get(clas[g]).map(String::as_str).unwrap_or("?")),
                12,
                LOST,
            );
        }
        ax.draw_text(im.height() as f32 - 18.0, 2.0, &format!("{m:?}"), 14, Color::WHITE);
    }
    Ok(fig)
}

/// A receptive field ([`crate::detect::receptive_field`]) beside the anchor of its cell: left,
/// the image with the anchor box; right, the map (0..1, `[sz, sz]`) as a heat map over the
/// darkened image.
pub fn show_receptive_field(im: &RgbImage, heat: &Tensor, anchor: BBox) -> Result<Figure> {
    let (w, h) = im.dimensions();
    let v: Vec<f32> = Vec::try_from(heat.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
    if v.len() != (w * h) as usize {
        return Err(crate::Error::Shape {
            what: "show_receptive_field: the map".into(),
            expected: format!("[{h}, {w}]"),
            found: heat.size(),
        });
    }
    let mut over = im.clone();
    for (p, &t) in over.pixels_mut().zip(&v) {
        // Black -> red -> yellow ("hot"), blended over the image at a third of its brightness.
        let t = t.clamp(0.0, 1.0).sqrt();
        let hot = [(t * 2.0).min(1.0), (t * 2.0 - 1.0).max(0.0), 0.0];
        for (ch, h) in p.0.iter_mut().zip(hot) {
            *ch = (*ch as f32 / 3.0 + h * 255.0 * 2.0 / 3.0).min(255.0) as u8;
        }
    }
    let mut fig = Figure::grid(1, 2, w, h)?;
    fig.ax(0).show_img(im).draw_rect(anchor, Color::WHITE);
    fig.ax(1).show_img(&over).draw_rect(anchor, Color::WHITE);
    Ok(fig)
}

/// The colour of an object a matching loses.
const LOST: Color = Color(230, 40, 40);

/// Dot colours of [`Anchors::show_centers`], one per grid (4x4 first).
const SET3_DOTS: [Color; 3] = [Color(255, 60, 60), Color(60, 200, 255), Color(255, 220, 40)];

/// Standard deviation of the jitter [`Anchors::show`] gives each anchor (image units), so that
/// the anchors of one cell can be told apart (the lesson's `np.random.normal(0, 0.01)`).
const ANCHOR_JITTER: f32 = 0.01;

impl Anchors {
    /// Lesson 9's scatter of the anchors' centres over the image (`plt.scatter(anc_x, anc_y)`),
    /// with its 8-tick grid: a dot per distinct centre, the grids' centres in distinct colours.
    pub fn show_centers(&self, im: &RgbImage) -> Result<Figure> {
        let (w, h) = (im.width() as f32, im.height() as f32);
        let v: Vec<f32> = Vec::try_from(self.centers.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let g: Vec<f32> = Vec::try_from(self.grid_sizes.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
        let mut fig = Figure::single(im.width(), im.height());
        let mut ax = fig.ax(0);
        ax.show_img(im).tick_grid(LESSON_TICKS, w, h, Color::WHITE);
        let mut sizes: Vec<f32> = g.clone();
        sizes.sort_by(|a, b| b.total_cmp(a));
        sizes.dedup();
        for (c, gs) in v.chunks_exact(2).zip(&g) {
            let k = sizes.iter().position(|s| s == gs).unwrap_or(0);
            ax.dot(c[0] * h, c[1] * w, 3, SET3_DOTS[k % SET3_DOTS.len()]);
        }
        Ok(fig)
    }

    /// The lesson's picture of the anchors: every anchor over `im` (`sz x sz`), numbered and
    /// coloured as `show_ground_truth` does, each moved by `N(0, ANCHOR_JITTER)` (in image
    /// units) from a generator seeded with `seed`.
    pub fn show(&self, im: &RgbImage, seed: u64) -> Result<Figure> {
        let sz = im.width().min(im.height()) as f32;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut normal = || {
            // Box-Muller
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-7), rng.random());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        };
        let boxes: Vec<BBox> = self
            .to_bboxes(1.0)?
            .into_iter()
            .map(|b| BBox::from_array(b.to_array().map(|v| (v + normal() * ANCHOR_JITTER) * sz)))
            .collect();
        let mut fig = Figure::single(im.width(), im.height());
        fig.ax(0).show_ground_truth(im, &boxes, None, None, 0.0, &[]);
        Ok(fig)
    }
}

// ---------------------------------------------------------------------------------------------
// Training

impl Recorder {
    /// The loss and learning-rate curves of everything trained so far.
    pub fn plot(&self) -> Result<Figure> {
        curves(&self.losses, &self.lrs)
    }
}

/// Smoothed loss and learning rate against the iteration, side by side.
fn curves(losses: &[f64], lrs: &[f64]) -> Result<Figure> {
    let mut fig = Figure::grid(1, 2, CURVE_PANEL.0, CURVE_PANEL.1)?;
    let it: Vec<f64> = (0..losses.len()).map(|i| i as f64).collect();
    fig.ax(0).line_plot(&it, losses, "iterations", "loss (smoothed)", false);
    fig.ax(1).line_plot(&it, lrs, "iterations", "learning rate", false);
    Ok(fig)
}

impl FitReport {
    /// This fit's curves, two a row: the smoothed training loss per batch with the validation
    /// loss at the end of each epoch, the learning rate, and once an epoch has ended each metric
    /// per epoch (the SSD's `map`), the best epoch marked when
    /// [`crate::learner::FitOpts::keep_best`] watches that metric.
    pub fn plot(&self) -> Result<Figure> {
        let metric_panels = if self.epochs.is_empty() { 0 } else { self.metric_names.len() };
        // Two charts a row, so that the output keeps its width in a notebook (a row of four
        // would be scaled down to half size).
        let rows = (2 + metric_panels as u32).div_ceil(2);
        let mut fig = Figure::grid(rows, 2, CURVE_PANEL.0, CURVE_PANEL.1)?;
        let it: Vec<f64> = (0..self.losses.len()).map(|i| i as f64).collect();
        let nb = self.batches_per_epoch;
        // Epoch k of this fit ends after (k + 1) * nb iterations (its last one is k * nb + nb - 1).
        let val_x: Vec<f64> = (0..self.epochs.len()).map(|k| ((k + 1) * nb) as f64 - 1.0).collect();
        let val_y: Vec<f64> = self.epochs.iter().map(|r| r.val_loss).collect();
        let mut series = vec![Series {
            xs: it.clone(),
            ys: self.losses.clone(),
            color: Color(31, 119, 180),
            label: "training (smoothed)".into(),
            dots: false,
        }];
        if nb > 0 && !val_y.is_empty() {
            series.push(Series {
                xs: val_x,
                ys: val_y,
                color: Color(255, 127, 14),
                label: "validation".into(),
                dots: true,
            });
        }
        fig.ax(0).series_plot(&series, "iterations", "loss");
        fig.ax(1).line_plot(&it, &self.lrs, "iterations", "learning rate", false);
        let epochs: Vec<f64> = self.epochs.iter().map(|r| r.epoch as f64).collect();
        for (m, name) in self.metric_names.iter().enumerate().take(metric_panels) {
            let ys: Vec<f64> = self.epochs.iter().map(|r| r.metrics.get(m).copied().unwrap_or(f64::NAN)).collect();
            let blue = Color(31, 119, 180);
            let mut series = vec![
                Series { xs: epochs.clone(), ys: ys.clone(), color: blue, label: name.clone(), dots: false },
                Series { xs: epochs.clone(), ys, color: blue, label: String::new(), dots: true },
            ];
            if let Some(b) = self.best.as_deref().filter(|b| &b.column == name) {
                series.push(Series {
                    xs: vec![b.epoch as f64],
                    ys: vec![b.value],
                    color: Color(214, 39, 40),
                    label: "best epoch".into(),
                    dots: true,
                });
            }
            fig.ax(2 + m).series_plot(&series, "epoch", name);
        }
        Ok(fig)
    }

    /// The validation images of the preview, ground truth beside prediction.
    pub fn plot_preview(&self) -> Result<Figure> {
        let p = self.preview.as_ref().ok_or_else(|| Error::Draw("this fit has no preview".into()))?;
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        match &p.spec.loss {
            Loss::Ssd { .. } => mistakes::show_ssd_errors(&p.batch, &p.out, &p.spec, NmfOpts::default(), &[]),
            _ => mistakes::show_truth_vs_prediction(&p.batch, &p.out, &p.spec, &[]),
        }
    }

    /// The report as one HTML block: the summary, the epoch table (with its time column), the
    /// loss, learning-rate and metric curves ([`FitReport::plot`]), and the preview's images
    /// beside their ground truth.
    pub fn to_html(&self) -> String {
        use base64::Engine;
        let img = |f: Result<Figure>, alt: &str| match f.and_then(|f| f.to_png()) {
            Ok(png) => format!(
                "<img alt=\"{alt}\" src=\"data:image/png;base64,{}\">",
                base64::engine::general_purpose::STANDARD.encode(png)
            ),
            Err(e) => format!("<p>{alt}: {e}</p>"),
        };
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut h = format!("<div><p><b>{}</b></p><pre>{}</pre>", esc(&self.summary()), esc(&self.table()));
        if !self.losses.is_empty() {
            h += &img(self.plot(), "loss, learning rate and metrics");
        }
        if self.preview.is_some() {
            h += "<p>Validation images after this fit, ground truth beside prediction:</p>";
            h += &img(self.plot_preview(), "validation images");
        }
        h + "</div>"
    }

    /// In a notebook: [`FitReport::to_html`], one output; in fastdet's kernel, where the fit's
    /// live output has become this report, one line pointing to it (`display(&report)` shows
    /// the whole report again).
    pub fn evcxr_display(&self) {
        if self.shown_live {
            evcxr_show(&Display::Html(live::pointer_line(&self.summary(), "report")));
        } else {
            evcxr_show(&Display::Html(self.to_html()));
        }
    }
}

impl LrFind {
    /// Loss against learning rate on a log axis, without the first `n_skip` and last
    /// `n_skip_end` points (fastai's `sched.plot(10, 5)`), with the suggested rates marked.
    pub fn plot(&self) -> Result<Figure> {
        let (lrs, losses) = self.shown();
        let loss_at = |lr: f64| lrs.iter().position(|&l| l == lr).map(|i| losses[i]).unwrap_or(f64::NAN);
        let marks: Vec<Mark> = self
            .suggestion()
            .map(|s| {
                vec![
                    Mark {
                        x: s.valley,
                        y: loss_at(s.valley),
                        label: format!("valley {:.1e}", s.valley),
                        color: Color(214, 39, 40),
                    },
                    Mark {
                        x: s.steep,
                        y: loss_at(s.steep),
                        label: format!("steep {:.1e}", s.steep),
                        color: Color(44, 160, 44),
                    },
                ]
            })
            .unwrap_or_default();
        let mut fig = Figure::grid(1, 1, 560, 360)?;
        fig.ax(0).line_plot_marked(lrs, losses, "learning rate (log scale)", "loss", true, &marks);
        Ok(fig)
    }

    /// In a notebook: [`LrFind::plot`]; in fastdet's kernel, where the run's live output has
    /// become that plot, one line pointing to it.
    pub fn evcxr_display(&self) {
        if self.shown_live {
            let s = match self.suggestion() {
                Some(s) => format!("lr_find: suggested {:.2e} (valley), {:.2e} (steepest)", s.valley, s.steep),
                None => format!("lr_find: {} learning rates", self.lrs.len()),
            };
            return evcxr_show(&Display::Html(live::pointer_line(&s, "plot")));
        }
        match self.plot() {
            Ok(f) => f.evcxr_display(),
            Err(e) => evcxr_show(&Display::Text(e.to_string())),
        }
    }
}

impl crate::learner::FitHandle {
    /// In a notebook: the fit's progress so far.
    pub fn evcxr_display(&self) {
        let p = self.progress();
        let state = if self.is_running() { "running" } else { "finished: wait() takes the learner back" };
        evcxr_show(&Display::Text(format!(
            "fit in the background, {state}, {} iterations\n{}",
            p.losses.len(),
            p.table()
        )));
        if !p.losses.is_empty() {
            evcxr_show(&Display::Png(p.plot().and_then(|f| f.to_png())));
        }
    }
}

impl Summary {
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Text(self.to_string()));
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

impl ApTable {
    /// In a notebook: the table as HTML.
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Html(self.to_html()));
    }

    pub fn to_html(&self) -> String {
        let coco = self.metric == ApMetric::Coco;
        let mut h = format!("<p><b>mAP ({})</b> = {:.4}", self.metric, self.map);
        if let (Some(a), Some(b)) = (self.map50, self.map75) {
            h += &format!(" (AP50 {a:.4}, AP75 {b:.4})");
        }
        h += "</p><table><tr><th>class</th><th>gt</th><th>dets</th><th>AP</th>";
        if coco {
            h += "<th>AP50</th><th>AP75</th>";
        }
        h += "</tr>";
        for c in &self.classes {
            h += &format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>", c.name, c.n_gt, c.n_det, fmt_ap(c.ap));
            if coco {
                h += &format!("<td>{}</td><td>{}</td>", fmt_ap(c.ap50), fmt_ap(c.ap75));
            }
            h += "</tr>";
        }
        h + "</table>"
    }

    /// Precision-recall curves of up to `max_classes` classes that have an AP (those with the
    /// most ground truth first), one panel each, 3 per row.
    pub fn pr_figure(&self, max_classes: usize) -> Result<Figure> {
        let mut cls: Vec<&ClassAp> = self.classes.iter().filter(|c| c.ap.is_some()).collect();
        cls.sort_by(|a, b| b.n_gt.cmp(&a.n_gt).then(a.class.cmp(&b.class)));
        cls.truncate(max_classes.max(1));
        let n = cls.len().max(1) as u32;
        let cols = n.min(3);
        let mut fig = Figure::grid(n.div_ceil(cols), cols, 320, 260)?;
        for (i, c) in cls.iter().enumerate() {
            let label = format!("precision: {} (AP {})", c.name, fmt_ap(c.ap));
            if c.recall.is_empty() {
                fig.ax(i).draw_text(
                    8.0,
                    8.0,
                    &format!("{}: {} objects, no detection (AP 0)", c.name, c.n_gt),
                    13,
                    Color::BLACK,
                );
                continue;
            }
            // The curve starts at (recall 0, precision 1), as scikit-learn's
            // `precision_recall_curve` does, on fixed 0..1 axes: a class found by one detection
            // is a visible line, and panels compare at a glance.
            let recall: Vec<f64> = std::iter::once(0.0).chain(c.recall.iter().copied()).collect();
            let precision: Vec<f64> = std::iter::once(1.0).chain(c.precision.iter().copied()).collect();
            fig.ax(i).line_plot_in(&recall, &precision, "recall", &label, (0.0, 1.0), (0.0, 1.05));
        }
        Ok(fig)
    }
}
