//! From an SSD learner to detections: decode every validation image, the lesson's `show_nmf`
//! post-processing, boxes back in the pixels of the original images (ready for [`crate::metrics`]).

use crate::anchors::Anchors;
use crate::data::DataLoader;
use crate::error::{Error, Result};
use crate::learner::Learner;
use crate::loss::Loss;
use crate::metrics::Detection;
use crate::nms::{show_nmf, NmfOpts};
use crate::ssd::{actn_to_bb, SsdConfig, SsdOutput};

/// The SSD configuration of a learner trained with [`Loss::Ssd`].
pub fn ssd_config(learn: &Learner) -> Result<SsdConfig> {
    match &learn.loss {
        Loss::Ssd { cfg, .. } => Ok(cfg.clone()),
        other => Err(Error::Invalid(format!("detections need an SSD learner, this one trains {other:?}"))),
    }
}

/// Detections for every image of `dl` (in eval mode), boxes scaled from the `sz x sz` input back to
/// each image's own size (the loader squashes: `CropType::No`).
pub fn detections(learn: &Learner, dl: &DataLoader, opts: NmfOpts) -> Result<Vec<Detection>> {
    let cfg = ssd_config(learn)?;
    let sz = dl.dataset.tfms.sz as f32;
    let anchors = Anchors::new(&cfg.anchors, learn.device());
    let mut dets = vec![];
    for batch in dl.iter(0) {
        let batch = batch?;
        let out = SsdOutput::unpack(&learn.predict_batch(&batch.x), cfg.n_classes)?;
        for (i, &idx) in batch.indices.iter().enumerate() {
            let (clas, offsets) = out.image(i as i64);
            let boxes = actn_to_bb(&offsets, &anchors);
            let rec = &dl.dataset.data.images[idx];
            let (sy, sx) = (rec.height as f32 / sz, rec.width as f32 / sz);
            for d in show_nmf(&boxes, &clas, sz, opts)? {
                dets.push(Detection { image_id: rec.id, class: d.class, bbox: d.bbox.scale(sy, sx), score: d.score });
            }
        }
    }
    Ok(dets)
}
