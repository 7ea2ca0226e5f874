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

/// The synthetic-shapes SSD (`make ssd-synthetic`, and the last section of notebook 06): the
/// seeded set, a ResNet18 SSD trained from scratch on it, and its validation split.
pub struct SyntheticSsd {
    pub learn: Learner,
    pub val: crate::data::Dataset,
    pub val_dl: DataLoader,
    pub dir: std::path::PathBuf,
}

/// Where the synthetic SSD keeps its data and weights: a per-user cache every clone reuses
/// (`$FASTDET_CACHE`, else `$XDG_CACHE_HOME/fastdet`, else `~/.cache/fastdet`).
pub fn synthetic_dir() -> std::path::PathBuf {
    let cache = std::env::var_os("FASTDET_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| std::path::PathBuf::from(p).join("fastdet")))
        .or_else(|| std::env::var_os("HOME").map(|p| std::path::PathBuf::from(p).join(".cache").join("fastdet")))
        .unwrap_or_else(|| std::path::PathBuf::from("out"));
    cache.join("ssd-synthetic-v1")
}

impl SyntheticSsd {
    pub const SZ: u32 = 128;
    const WEIGHTS: &'static str = "ssd_synthetic";

    /// Write the set under `dir` (unless it is there already) and build an untrained learner.
    pub fn new(dir: &std::path::Path, device: tch::Device) -> Result<Self> {
        use crate::data::synthetic::{self, SyntheticConfig};
        use crate::data::{ImageData, Pascal, TargetKind};
        use crate::transforms::{tfms_from_model, CropType, RandomFlip, TfmY};
        let data_dir = dir.join("data");
        let cfg = SyntheticConfig { n_train: 640, n_val: 160, size: Self::SZ, max_objects: 3, min_frac: 0.25, max_frac: 0.6, seed: 0 };
        let pascal = if data_dir.join("pascal_val2007.json").is_file() { Pascal::open(&data_dir)? } else { synthetic::write(&data_dir, &cfg)? };
        let (trn, val) = (pascal.json("train")?, pascal.json("val")?);
        let mut ssd = SsdConfig::lesson_189(trn.classes.len() as i64);
        ssd.anchors.grids = ssd.head_grids(crate::model::feature_side(Self::SZ as i64));
        let tfms = tfms_from_model(Self::SZ, vec![RandomFlip::default().into()], CropType::No, TfmY::Coord)?;
        let md = ImageData::from_dataset(trn, TargetKind::AllBoxes, tfms.clone(), 32, 0.1, 42, 0, device)?;
        tch::manual_seed(0);
        let mut learn = Learner::new(
            md,
            crate::model::Arch::ResNet18,
            crate::model::HeadKind::Ssd(ssd.clone()),
            Loss::Ssd { cfg: ssd, sz: Self::SZ as f64 },
            vec![],
            None,
        )?;
        learn.models_dir = dir.join("models");
        learn.unfreeze();
        let val_ds = crate::data::DetDataset::new(std::sync::Arc::new(val.clone()), (0..val.len()).collect(), tfms.1, TargetKind::AllBoxes, false)?;
        let val_dl = DataLoader::new(val_ds, 32, false, 0, device)?;
        Ok(Self { learn, val, val_dl, dir: dir.to_path_buf() })
    }

    /// The trained weights' file (it exists once [`SyntheticSsd::train`] has run).
    pub fn weights(&self) -> std::path::PathBuf {
        self.learn.models_dir.join(format!("{}.safetensors", Self::WEIGHTS))
    }

    /// Train from scratch (one CLR cycle of `epochs`, div 10, cut 5) and save the weights.
    pub fn train(&mut self, lr: f64, epochs: usize) -> Result<()> {
        self.learn.fit(lr, 1, crate::learner::FitOpts::clr(epochs, 10., 5))?;
        self.learn.save(Self::WEIGHTS)?;
        Ok(())
    }

    /// Load the weights of an earlier [`SyntheticSsd::train`].
    pub fn load_trained(&mut self) -> Result<()> {
        self.learn.load(Self::WEIGHTS)
    }

    /// VOC07 (or another) mAP on the validation split, detections with scores over `thresh`.
    pub fn evaluate(&self, thresh: f32, metric: crate::metrics::Metric) -> Result<crate::metrics::ApTable> {
        let dets = detections(&self.learn, &self.val_dl, NmfOpts { thresh, overlap: 0.4, top_k: 100 })?;
        crate::metrics::evaluate(&self.val, &dets, metric)
    }
}

/// The first `n` images of a batch with their detections after the lesson's `show_nmf` (boxes,
/// classes and scores drawn as `show_ground_truth` does), 4 panels wide.
pub fn show_nms(
    batch: &crate::data::Batch,
    out: &tch::Tensor,
    cfg: &SsdConfig,
    classes: &[String],
    opts: NmfOpts,
    n: usize,
) -> Result<crate::draw::Figure> {
    let packed = SsdOutput::unpack(out, cfg.n_classes)?;
    let images = batch.images()?;
    let n = n.min(images.len()).max(1);
    let sz = images.first().map(|i| i.width()).unwrap_or(1);
    let cols = n.min(4) as u32;
    let mut fig = crate::draw::Figure::grid((n as u32).div_ceil(cols), cols, sz, sz)?;
    let anchors = Anchors::new(&cfg.anchors, out.device());
    for (i, im) in images.iter().take(n).enumerate() {
        let (clas, offsets) = packed.image(i as i64);
        let dets = show_nmf(&actn_to_bb(&offsets, &anchors), &clas, sz as f32, opts)?;
        let b: Vec<_> = dets.iter().map(|d| d.bbox).collect();
        let c: Vec<_> = dets.iter().map(|d| d.class).collect();
        let p: Vec<_> = dets.iter().map(|d| d.score).collect();
        fig.ax(i).show_ground_truth(im, &b, Some(&c), Some(&p), 0.0, classes);
    }
    Ok(fig)
}
