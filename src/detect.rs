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

/// `fastdet predict`: the detections of a trained SSD run (a `fastdet train` folder) on every
/// image of `data`, written to `out` in the COCO results format; with `draw`, one picture per
/// image (the detections over the original image) in that folder. Returns the detections.
pub fn predict_run(
    run_dir: &std::path::Path,
    data: &crate::data::Dataset,
    out: &std::path::Path,
    draw: Option<&std::path::Path>,
    opts: NmfOpts,
) -> Result<Vec<Detection>> {
    use crate::train::{Progress, TrainConfig, CONFIG_FILE, PROGRESS_FILE};
    let cfg = TrainConfig::from_file(run_dir.join(CONFIG_FILE))?;
    let progress = Progress::read(&run_dir.join(PROGRESS_FILE))?;
    let last = progress.completed.last().ok_or_else(|| {
        Error::Invalid(format!("{}: no stage is finished, so there are no weights to predict with", run_dir.display()))
    })?;
    let mut learn = cfg.learner()?;
    ssd_config(&learn)?;
    if learn.data.classes != data.classes {
        return Err(Error::Invalid(format!(
            "{}: the run was trained on classes {:?}, the data has {:?}",
            run_dir.display(),
            learn.data.classes,
            data.classes
        )));
    }
    learn.load(&run_dir.join(&last.checkpoint).to_string_lossy())?;
    let val_tfms = learn.data.val_dl.dataset.tfms.clone();
    let ds = crate::data::DetDataset::new(
        std::sync::Arc::new(data.clone()),
        (0..data.len()).collect(),
        val_tfms,
        crate::data::TargetKind::AllBoxes,
        false,
    )?;
    let dl = DataLoader::new(ds, learn.data.val_dl.bs, false, 0, learn.device())?;
    let dets = detections(&learn, &dl, opts)?;
    crate::metrics::save_coco_results(out, &dets)?;
    if let Some(dir) = draw {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (i, rec) in data.images.iter().enumerate() {
            let mine: Vec<&Detection> = dets.iter().filter(|d| d.image_id == rec.id).collect();
            let boxes: Vec<_> = mine.iter().map(|d| d.bbox).collect();
            let clas: Vec<_> = mine.iter().map(|d| d.class).collect();
            let prs: Vec<_> = mine.iter().map(|d| d.score).collect();
            let im = data.image(i)?;
            let mut fig = crate::draw::Figure::single(im.width(), im.height());
            fig.ax(0).show_ground_truth(&im, &boxes, Some(&clas), Some(&prs), 0.0, &data.classes);
            let stem = std::path::Path::new(&rec.file_name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or(rec.id.to_string());
            fig.save_png(dir.join(format!("{stem}.png")))?;
        }
    }
    Ok(dets)
}
