//! What a model gets wrong, drawn: ground truth beside prediction with every detection marked by
//! its outcome ([`crate::metrics::confusion`]), each lesson model's predictions against its
//! targets, the images with the largest losses ([`Interpretation::plot_top_losses`]) and the
//! confusion matrix as a heat map.

use crate::boxes::BBox;
use crate::data::{Batch, BatchTarget, Dataset};
use crate::draw::{evcxr_show, Ax, Color, Display, Figure};
use crate::error::{Error, Result};
use crate::interpret::Interpretation;
use crate::metrics::confusion::{match_image, Confusion, ImageErrors, Outcome};
use crate::metrics::Detection;
use crate::model::loss::Loss;
use crate::model::{ModelOutput, ModelSpec};
use crate::nms::NmfOpts;
use image::RgbImage;
use tch::{Device, Kind, Tensor};

/// A found object, a true positive, a right answer.
pub const RIGHT: Color = Color(40, 210, 70);
/// A detection of an object of another class.
pub const WRONG_CLASS: Color = Color(255, 150, 0);
/// A second detection of an object already found.
pub const DUPLICATE: Color = Color(210, 90, 255);
/// A detection of nothing, a missed object, a wrong answer.
pub const WRONG: Color = Color(245, 45, 45);
/// A difficult object, and detections of one (VOC ignores them).
pub const IGNORED: Color = Color(160, 160, 160);

/// The legend of the detection pictures.
pub const DETECTION_LEGEND: [(Color, &str); 6] = [
    (RIGHT, "found / true positive"),
    (WRONG_CLASS, "wrong class"),
    (DUPLICATE, "duplicate"),
    (WRONG, "missed / background"),
    (IGNORED, "difficult (ignored)"),
    (Color::WHITE, "left: ground truth, right: prediction"),
];

fn outcome_color(o: &Outcome) -> Color {
    match o {
        Outcome::TruePositive { .. } => RIGHT,
        Outcome::WrongClass { .. } => WRONG_CLASS,
        Outcome::Duplicate { .. } => DUPLICATE,
        Outcome::Background => WRONG,
        Outcome::Ignored { .. } => IGNORED,
    }
}

fn name(classes: &[String], c: usize) -> &str {
    classes.get(c).map(String::as_str).unwrap_or("?")
}

/// One image's ground truth (on `gt`) marked by outcome: found, found as another class, missed,
/// difficult; `caption` under it.
fn draw_truth(gt: &mut Ax<'_>, p: &ErrorPair, classes: &[String], caption: &str) {
    let ErrorPair { im, objects, matched, missed } = p;
    gt.show_img(im);
    let label_sz = 13;
    for (j, (b, c, difficult)) in objects.iter().enumerate() {
        let how = matched
            .iter()
            .map(|(_, o)| o)
            .find(|o| matches!(o, Outcome::TruePositive { gt } | Outcome::WrongClass { gt } if *gt == j));
        let (color, note) = if *difficult {
            (IGNORED, " (difficult)")
        } else if missed.contains(&j) {
            (WRONG, " missed")
        } else if matches!(how, Some(Outcome::WrongClass { .. })) {
            (WRONG_CLASS, " as another class")
        } else {
            (RIGHT, "")
        };
        gt.draw_labelled(*b, &format!("{}{note}", name(classes, *c)), label_sz, color);
    }
    if !caption.is_empty() {
        let h = im.height() as f32;
        gt.draw_text_lines(h - 2.0 * (label_sz as f32 + 1.0) / gt.scale(), 2.0, caption, label_sz, Color::WHITE, 2);
    }
}

fn draw_predictions(
    pred: &mut Ax<'_>,
    im: &RgbImage,
    objects: &[(BBox, usize, bool)],
    matched: &[(Detection, Outcome)],
    classes: &[String],
) {
    pred.show_img(im);
    // Lowest score first, so the most confident boxes are drawn on top.
    for (d, o) in matched.iter().rev() {
        let mut label = format!("{} {:.2}", name(classes, d.class), d.score);
        match o {
            Outcome::WrongClass { gt } => label += &format!(" (is {})", name(classes, objects[*gt].1)),
            Outcome::Duplicate { .. } => label += " dup",
            _ => {}
        }
        pred.draw_labelled(d.bbox, &label, 13, outcome_color(o));
    }
}

/// Ground truth beside prediction for a batch's SSD outputs `out` (`[B, A, C+1+4]`): each image
/// twice, left its objects (found, found with another class, missed), right its detections
/// after the lesson's NMS marked by outcome (true positive, wrong class, duplicate,
/// background), with `captions[i]` under image `i` and a legend.
pub fn show_ssd_errors(
    batch: &Batch,
    out: &ModelOutput,
    model: &impl AsRef<ModelSpec>,
    opts: NmfOpts,
    captions: &[String],
) -> Result<Figure> {
    let spec = model.as_ref();
    let classes = &spec.classes;
    let images = batch.images()?;
    let n = images.len();
    if n == 0 {
        return Err(Error::Invalid("show_ssd_errors: an empty batch".into()));
    }
    let sz = spec.sz;
    let found = spec.detections(out, opts, n)?;
    let mut pairs = vec![];
    for (i, (im, dets)) in images.into_iter().zip(found).enumerate() {
        let objects: Vec<(BBox, usize, bool)> =
            batch.objects(i)?.into_iter().map(|(b, c)| (b, c.unwrap_or(usize::MAX), false)).collect();
        let dets: Vec<Detection> = dets.into_iter().map(|d| Detection::new(0, d)).collect();
        let (matched, missed) = match_image(&objects, &dets);
        pairs.push(ErrorPair { im, objects, matched, missed });
    }
    error_figure(pairs, sz, classes, captions)
}

/// One image's ground truth and its detections matched by VOC's rule, drawn side by side.
struct ErrorPair {
    im: RgbImage,
    objects: Vec<(BBox, usize, bool)>,
    matched: Vec<(Detection, Outcome)>,
    missed: Vec<usize>,
}

/// The pairs two panels each (4 panels wide), captions under the ground truth, the legend below.
fn error_figure(pairs: Vec<ErrorPair>, cell: u32, classes: &[String], captions: &[String]) -> Result<Figure> {
    let n = pairs.len();
    let mut fig = Figure::for_items(2 * n, if n > 1 { 4 } else { 2 }, cell)?;
    for (i, p) in pairs.iter().enumerate() {
        let caption = captions.get(i).map(String::as_str).unwrap_or("");
        draw_truth(&mut fig.ax(2 * i), p, classes, caption);
        draw_predictions(&mut fig.ax(2 * i + 1), &p.im, &p.objects, &p.matched, classes);
    }
    let footer = fig.add_footer(40);
    fig.ax(footer).legend(&DETECTION_LEGEND, 13);
    Ok(fig)
}

/// Ground truth beside prediction for images of a dataset and their matched detections (a
/// [`Confusion`]'s [`ImageErrors`]), each image in a `cell x cell` panel.
pub fn show_image_errors(ds: &Dataset, errors: &[&ImageErrors], captions: &[String], cell: u32) -> Result<Figure> {
    if errors.is_empty() {
        return Err(Error::Draw("show_image_errors: no images to show".into()));
    }
    let pairs = errors
        .iter()
        .map(|e| {
            let objects = ds.images[e.image].objects.iter().map(|o| (o.bbox, o.class, o.difficult)).collect();
            Ok(ErrorPair { im: ds.image(e.image)?, objects, matched: e.dets.clone(), missed: e.missed.clone() })
        })
        .collect::<Result<Vec<_>>>()?;
    error_figure(pairs, cell, &ds.classes, captions)
}

/// Lesson 8's models against their targets, one panel per image, 4 wide, `captions[i]` at the
/// bottom of image `i`: the classifier's class and probability (green when right, red with the
/// true class when wrong); the box regressor's box (red) over the true one (green) with their
/// IoU; the single-object detector's box and class over the true ones; the multi-label
/// classes over [`super::MULTILABEL_SHOW_THRESH`] split into right (green), missed (red) and
/// extra (orange).
pub fn show_truth_vs_prediction(
    batch: &Batch,
    out: &ModelOutput,
    model: &impl AsRef<ModelSpec>,
    captions: &[String],
) -> Result<Figure> {
    let spec = model.as_ref();
    let (loss, classes) = (&spec.loss, &spec.classes);
    if matches!(loss, Loss::Ssd { .. }) {
        return Err(Error::Invalid(
            "show_truth_vs_prediction: an SSD draws ground truth beside prediction with show_ssd_errors".into(),
        ));
    }
    crate::model::loss::check_output("show_truth_vs_prediction", out, &batch.y)?;
    // One row per image in the lesson's layout (the single-object detector's 4 + C).
    let out = out.packed();
    let images = batch.images()?;
    let cell = images.first().map(|i| i.width()).unwrap_or(1);
    let mut fig = Figure::for_items(images.len(), 4, cell)?;
    let out = out.to_device(Device::Cpu).to_kind(Kind::Float);
    let row_of = |t: &Tensor, i: usize| -> Result<Vec<f32>> {
        Ok(Vec::try_from(t.get(i as i64).to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?)
    };
    for (i, im) in images.iter().enumerate() {
        let row = row_of(&out, i)?;
        let mut ax = fig.ax(i);
        ax.show_img(im);
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(c, _)| c).unwrap_or(0);
        let softmax_max = |v: &[f32]| {
            let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = v.iter().map(|x| (x - m).exp()).sum();
            1.0 / z
        };
        match (&batch.y, loss) {
            (BatchTarget::Class(t), _) => {
                let truth = i64::try_from(t.get(i as i64))? as usize;
                let p = argmax(&row);
                let right = p == truth;
                let mut txt = format!("{} {:.2}", name(classes, p), softmax_max(&row));
                if !right {
                    txt += &format!(" (is {})", name(classes, truth));
                }
                ax.draw_text(2.0, 2.0, &txt, 14, if right { RIGHT } else { WRONG });
            }
            (BatchTarget::Box(t), _) => {
                let truth = BBox::from_array(
                    row_of(t, i)?.try_into().map_err(|_| Error::Invalid("a box target of 4 numbers".into()))?,
                );
                let pred = BBox::from_array([row[0], row[1], row[2], row[3]]);
                ax.draw_rect(truth, RIGHT).draw_rect(pred, WRONG);
                ax.draw_text(2.0, 2.0, &format!("IoU {:.2}", pred.pixel_iou(&truth)), 14, Color::WHITE);
            }
            (BatchTarget::BoxClass { bbox, class }, Loss::Detn { sz, .. }) => {
                let truth = BBox::from_array(
                    row_of(bbox, i)?.try_into().map_err(|_| Error::Invalid("a box target of 4 numbers".into()))?,
                );
                let tc = i64::try_from(class.get(i as i64))? as usize;
                let s = |v: f32| 1.0 / (1.0 + (-v).exp()) * *sz as f32;
                let pred = BBox::from_array([s(row[0]), s(row[1]), s(row[2]), s(row[3])]);
                let pc = argmax(&row[4..]);
                let iou = pred.pixel_iou(&truth);
                let right = pc == tc && iou > 0.5;
                ax.draw_labelled(truth, name(classes, tc), 13, RIGHT);
                ax.draw_labelled(
                    pred,
                    &format!("{} {:.2}", name(classes, pc), softmax_max(&row[4..])),
                    13,
                    if right {
                        RIGHT
                    } else if pc == tc {
                        WRONG_CLASS
                    } else {
                        WRONG
                    },
                );
                let s = ax.scale();
                ax.draw_text(im.height() as f32 - 34.0 / s, 2.0, &format!("IoU {iou:.2}"), 14, Color::WHITE);
            }
            (BatchTarget::MultiLabel(t), _) => {
                let truth = row_of(t, i)?;
                let (mut right, mut missed, mut extra) = (vec![], vec![], vec![]);
                for c in 0..row.len() {
                    let (p, y) = (1.0 / (1.0 + (-row[c]).exp()) > super::MULTILABEL_SHOW_THRESH, truth[c] > 0.5);
                    match (p, y) {
                        (true, true) => right.push(name(classes, c)),
                        (false, true) => missed.push(name(classes, c)),
                        (true, false) => extra.push(name(classes, c)),
                        _ => {}
                    }
                }
                let mut top = 2.0;
                for (label, names, color) in
                    [("right:", &right, RIGHT), ("missed:", &missed, WRONG), ("extra:", &extra, WRONG_CLASS)]
                {
                    if !names.is_empty() {
                        ax.draw_text_lines(top, 2.0, &format!("{label} {}", names.join(" ")), 13, color, 2);
                        top += 28.0;
                    }
                }
            }
            (y, l) => {
                return Err(Error::Invalid(format!(
                    "show_truth_vs_prediction: {l:?} against {} targets",
                    y.kind_name()
                )))
            }
        }
        if let Some(c) = captions.get(i).filter(|c| !c.is_empty()) {
            let s = ax.scale();
            ax.draw_text_lines(im.height() as f32 - 16.0 / s, 2.0, c, 12, Color::WHITE, 1);
        }
    }
    Ok(fig)
}

impl Interpretation {
    /// fastai's `plot_top_losses(k)`: the `k` validation images with the largest loss, ground
    /// truth beside prediction, the loss (by part) written on each.
    pub fn plot_top_losses(&self, k: usize) -> Result<Figure> {
        self.plot_positions(&self.top_losses(k))
    }

    /// The `k` images the model gets most right (smallest loss).
    pub fn plot_least_losses(&self, k: usize) -> Result<Figure> {
        self.plot_positions(&self.least_losses(k))
    }

    /// Ground truth beside prediction for the validation images at `positions`.
    pub fn plot_positions(&self, positions: &[usize]) -> Result<Figure> {
        let (batch, out) = self.batch(positions)?;
        let captions: Vec<String> = positions.iter().map(|&p| self.caption(p)).collect();
        match &self.spec.loss {
            Loss::Ssd { .. } => show_ssd_errors(&batch, &out, &self.spec, NmfOpts::default(), &captions),
            _ => show_truth_vs_prediction(&batch, &out, &self.spec, &captions),
        }
    }
}

impl Confusion {
    /// The matrix as a heat map: rows true classes, columns predicted ones, background last;
    /// each row coloured by its share of the row's objects, counts written in.
    pub fn plot(&self) -> Result<Figure> {
        let k = self.matrix.len();
        // Cells shrink as classes grow: 64 px for a few classes, 30 px for VOC's 21 rows.
        let cell = (420 / k.max(1) as u32).clamp(30, 64);
        let (left, top) = (110u32, 70u32);
        let mut fig = Figure::single(left + cell * k as u32 + 10, top + cell * k as u32 + 10);
        let mut ax = fig.ax(0);
        ax.draw_text(2.0, 2.0, "true \\ predicted (background last)", 13, Color::BLACK);
        // Column names in one row when every name fits its cell, else on two alternating rows
        // (each may then use two cells' width), shortened to fit.
        let one_row = (0..k).all(|p| Ax::text_width(self.label(p), 11) <= cell as i32 - 2);
        for p in 0..k {
            let (y, room) = if one_row {
                (44.0, cell as i32 - 2)
            } else if p % 2 == 0 {
                (26.0, 2 * cell as i32 - 4)
            } else {
                (44.0, 2 * cell as i32 - 4)
            };
            let mut name: String = self.label(p).to_string();
            while name.chars().count() > 1 && Ax::text_width(&name, 11) > room {
                name.pop();
            }
            ax.draw_text_lines(y, (left + p as u32 * cell) as f32 + 1.0, &name, 11, Color::BLACK, 1);
        }
        for a in 0..k {
            let y = (top + a as u32 * cell) as f32;
            ax.draw_text_lines(y + (cell as f32 - 14.0) / 2.0, 2.0, self.label(a), 12, Color::BLACK, 1);
            let row_sum: usize = self.matrix[a].iter().sum();
            for p in 0..k {
                let v = self.matrix[a][p];
                let frac = if row_sum > 0 { v as f32 / row_sum as f32 } else { 0.0 };
                let shade = |c0: f32, c1: f32| (c0 + (c1 - c0) * frac).round() as u8;
                let color = if a == p {
                    Color(shade(245.0, 20.0), shade(245.0, 140.0), shade(245.0, 60.0))
                } else {
                    Color(shade(245.0, 200.0), shade(245.0, 30.0), shade(245.0, 30.0))
                };
                let x = (left + p as u32 * cell) as f32;
                ax.fill_rect(BBox::new(y, x, y + cell as f32 - 2.0, x + cell as f32 - 2.0), color);
                if v > 0 {
                    // The count centred in its cell.
                    let txt = v.to_string();
                    let tx = x + ((cell as f32 - 2.0 - Ax::text_width(&txt, 12) as f32) / 2.0).max(1.0);
                    let ty = y + (cell as f32 - 2.0 - 13.0) / 2.0;
                    ax.draw_text_lines(ty, tx, &txt, 12, if frac > 0.5 { Color::WHITE } else { Color::BLACK }, 1);
                }
            }
        }
        Ok(fig)
    }

    /// In a notebook: the summary and the most confused pairs printed, the heat map shown.
    pub fn evcxr_display(&self) {
        println!("{}", self.summary());
        for c in self.most_confused(8) {
            println!("  {:>12} -> {:<12} {}", c.actual, c.predicted, c.count);
        }
        match self.plot() {
            Ok(f) => evcxr_show(&Display::Png(f.to_png())),
            Err(e) => evcxr_show(&Display::Text(e.to_string())),
        }
    }
}
