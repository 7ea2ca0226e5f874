//! Metrics of the whole validation set in the epoch table: [`Metric::Map`], an SSD's VOC07 mAP
//! on the validation split after each epoch. Unlike the lessons' per-batch metrics (a mean over
//! batches), an AP needs every detection of the split ranked together, so the validation pass
//! collects each batch's detections ([`WholeSetMetrics::add`]) and scores them once at the end
//! ([`WholeSetMetrics::merge`]), with the evaluator of [`super::ap`].
//!
//! The detections are those of `detect::detections` ([`crate::model::Model::detections`] and
//! [`to_image_detections`], here below `learner` and `detect` in the layers): the lesson's decoding and NMS with
//! [`NmfOpts::evaluation`] (scores over 0.01, the best 100 per class), boxes scaled from the
//! `sz x sz` input back to each image's size (the SSD's loader squashes, `CropType::No`), scored
//! against the validation images' own ground truth.

use super::ap::{evaluate, ApMetric, Detection};
use super::Metric;
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result};
use crate::model::{Model, ModelOutput};
use crate::nms::{NmfOpts, ScoredBox};
use std::time::Instant;

/// The whole-set metrics of a learner during one validation pass.
pub struct WholeSetMetrics {
    /// `Some` when the metrics include [`Metric::Map`].
    map: Option<MapAccumulator>,
    metrics: Vec<Metric>,
}

/// An SSD's detections on the validation batches so far.
struct MapAccumulator {
    dets: Vec<Detection>,
    /// Seconds spent decoding, NMS-ing and scoring (what the mAP adds to an epoch).
    secs: f64,
}

impl WholeSetMetrics {
    /// For `metrics` of `model`; an error when [`Metric::Map`] is asked of a model that is not an
    /// SSD.
    pub fn new(metrics: &[Metric], model: &Model) -> Result<Self> {
        let map = if metrics.contains(&Metric::Map) {
            model.ssd_parts("the metric map (its anchors decode the boxes)")?;
            Some(MapAccumulator { dets: vec![], secs: 0.0 })
        } else {
            None
        };
        Ok(Self { map, metrics: metrics.to_vec() })
    }

    /// Collect the detections of a validation batch: `out` the outputs of `model` for the
    /// images `indices` of `dl`'s dataset.
    pub fn add(&mut self, model: &Model, out: &ModelOutput, dl: &DataLoader, indices: &[usize]) -> Result<()> {
        let Some(m) = &mut self.map else { return Ok(()) };
        let t = Instant::now();
        let sz = dl.dataset.tfms.sz as f32;
        let found = model.detections(out, NmfOpts::evaluation(), usize::MAX)?;
        m.dets.extend(to_image_detections(&dl.dataset.data, indices, found, sz));
        m.secs += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// The values of every metric in order: `per_batch` holds those of the per-batch metrics
    /// (in order, without the whole-set ones), the whole-set ones are computed here on `dl`'s
    /// images.
    pub fn merge(self, per_batch: Vec<f64>, dl: &DataLoader) -> Result<Vec<f64>> {
        let mut per_batch = per_batch.into_iter();
        let mut map = self.map.map(|mut m| {
            let t = Instant::now();
            let gt = dl.dataset.data.subset(&dl.dataset.indices);
            let v = evaluate(&gt, &m.dets, ApMetric::Voc07).map(|table| table.map);
            m.secs += t.elapsed().as_secs_f64();
            v
        });
        self.metrics
            .iter()
            .map(|m| match m {
                Metric::Map => map.take().unwrap_or_else(|| Err(Error::Invalid("map listed twice".into()))),
                _ => per_batch.next().ok_or_else(|| Error::Invalid("a per-batch metric without a value".into())),
            })
            .collect()
    }
}

/// Each image's boxes found at `sz x sz` (one list per entry of `indices`, positions in `data`)
/// scaled back to the image's own size, as [`Detection`]s of its id.
pub fn to_image_detections(data: &Dataset, indices: &[usize], found: Vec<Vec<ScoredBox>>, sz: f32) -> Vec<Detection> {
    let mut dets = vec![];
    for (&idx, boxes) in indices.iter().zip(found) {
        let rec = &data.images[idx];
        let (sy, sx) = (rec.height as f32 / sz, rec.width as f32 / sz);
        dets.extend(boxes.into_iter().map(|d| Detection {
            image_id: rec.id,
            class: d.class,
            bbox: d.bbox.scale(sy, sx),
            score: d.score,
        }));
    }
    dets
}
