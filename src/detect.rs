//! From an SSD learner to detections: decode every image of a loader, the lesson's `show_nmf`
//! post-processing, boxes back in the pixels of the original images (ready for
//! [`crate::metrics`]); `fastdet predict` on a run folder; and the synthetic-shapes SSD that
//! notebook 06 and `make ssd-synthetic` train.

use crate::anchors::AnchorConfig;
use crate::data::synthetic::{self, SyntheticConfig};
use crate::data::{Batch, BatchTarget, DataLoader, DataOpts, Dataset, DetDataset, ImageData, Pascal, TargetKind};
use crate::error::{Error, Result};
use crate::learner::{FitOpts, Learner, LearnerOpts};
pub use crate::metrics::epoch_map::to_image_detections;
use crate::metrics::{evaluate, ApMetric, ApTable, Detection};
use crate::model::ssd::{Matching, SsdConfig, SsdOutput};
use crate::model::ssd_loss::{print_ssd_loss, trace_ssd_1_loss, SsdTrace};
use crate::model::{Arch, Model, ModelOutput};
use crate::nms::NmfOpts;
use crate::task::TaskParts;
use crate::train::{RunProgress, TrainConfig, CONFIG_FILE, PROGRESS_FILE};
use crate::transforms::{tfms_from_model, CropType, RandomFlip, TfmY};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The SSD configuration of an SSD learner's model.
pub fn ssd_config(learn: &Learner) -> Result<SsdConfig> {
    Ok(learn.model.spec.ssd_config("detections")?.clone())
}

/// A batch's box targets: boxes, classes and objects per image.
type BoxTargets<'a> = (&'a tch::Tensor, &'a tch::Tensor, &'a tch::Tensor);

/// An SSD learner's output on `batch`, with the batch's box targets.
fn ssd_parts<'a>(learn: &Learner, batch: &'a Batch) -> Result<(ModelOutput, BoxTargets<'a>)> {
    learn.model.ssd_parts("an SSD batch loss")?;
    let BatchTarget::Boxes { bbox, class, n_objects } = &batch.y else {
        return Err(Error::Invalid(format!(
            "an SSD batch has all the boxes of each image, this one has {} targets",
            batch.y.kind_name()
        )));
    };
    Ok((learn.predict_batch(&batch.x), (bbox, class, n_objects)))
}

/// Lesson 9's `ssd_loss(batch, y, print_it=True)` on a learner's predictions for `batch`
/// ([`print_ssd_loss`] on the learner's outputs): prints each image's best-anchor overlaps and
/// the batch's `loc` and `clas` losses, and returns them.
pub fn print_batch_loss(learn: &Learner, batch: &Batch) -> Result<(f64, f64)> {
    let (out, (bbox, class, n_objects)) = ssd_parts(learn, batch)?;
    let (cfg, anchors) = learn.model.ssd_parts("print_batch_loss")?;
    let dev = anchors.device();
    let sz = learn.model.sz() as f64;
    let o = out.ssd("print_batch_loss")?;
    let parts = print_ssd_loss(o, &bbox.to_device(dev), &class.to_device(dev), Some(n_objects), sz, anchors, cfg)?;
    Ok((f64::try_from(&parts.loc)?, f64::try_from(&parts.class)?))
}

/// Lesson 9's "testing" walk-through on image `idx` of `batch`, with the learner's predictions
/// and matching; anchors over `pos_iou` are positives (the lesson's testing cell: 0.5).
pub fn trace_image(learn: &Learner, batch: &Batch, idx: usize, pos_iou: f64) -> Result<SsdTrace> {
    let (out, (bbox, class, n_objects)) = ssd_parts(learn, batch)?;
    let (cfg, anchors) = learn.model.ssd_parts("trace_image")?;
    let i = idx as i64;
    if i >= bbox.size()[0] {
        return Err(Error::Invalid(format!("trace_image: image {idx} of a batch of {}", bbox.size()[0])));
    }
    let cfg = SsdConfig { pos_iou, ..cfg.clone() };
    let sz = learn.model.sz() as f64;
    let (n, k) = (bbox.size()[1], i64::try_from(n_objects.get(i))?);
    let dev = anchors.device();
    let bb = (bbox.get(i).narrow(0, n - k, k) / sz).to_kind(tch::Kind::Float).to_device(dev);
    let cl = class.get(i).narrow(0, n - k, k).to_device(dev);
    let (logits, offsets) = out.ssd("trace_image")?.image(i);
    trace_ssd_1_loss(&logits, &offsets, &bb, &cl, anchors, &cfg)
}

/// Detections for every image of `dl` (in eval mode), boxes scaled from the `sz x sz` input back to
/// each image's own size (the loader squashes: `CropType::No`).
pub fn detections(learn: &Learner, dl: &DataLoader, opts: NmfOpts) -> Result<Vec<Detection>> {
    detections_with(&learn.model, |x| learn.predict_batch(x), dl, opts)
}

/// Detections of an SSD `model` on every image of `data` (any split of any dataset with the
/// model's classes), in batches of `bs`, boxes in each image's pixels: what to write with
/// [`crate::metrics::save_coco_results`] or score with [`crate::metrics::evaluate`].
pub fn detections_on(model: &Model, data: &Dataset, bs: usize, opts: NmfOpts) -> Result<Vec<Detection>> {
    model.ssd_parts("detections_on")?;
    if model.spec.classes != data.classes {
        return Err(Error::Dataset {
            path: data.source.clone(),
            problem: format!("has the classes {:?}, the model was trained on {:?}", data.classes, model.spec.classes),
        });
    }
    let (_, val_tfms) = tfms_from_model(model.spec.sz, vec![], model.spec.crop, TfmY::Coord)?;
    let ds = DetDataset::new(Arc::new(data.clone()), (0..data.len()).collect(), val_tfms, TargetKind::AllBoxes, false)?;
    let dl = DataLoader::new(ds, bs, false, 0, model.device())?;
    detections_with(model, |x| model.predict(x), &dl, opts)
}

/// [`detections`] of an SSD and its forward pass.
fn detections_with(
    model: &Model,
    forward: impl Fn(&tch::Tensor) -> ModelOutput,
    dl: &DataLoader,
    opts: NmfOpts,
) -> Result<Vec<Detection>> {
    model.ssd_parts("detections")?;
    let sz = dl.dataset.tfms.sz as f32;
    let mut dets = vec![];
    for batch in dl.iter(0) {
        let batch = batch?;
        let found = model.detections(&forward(&batch.x), opts, usize::MAX)?;
        dets.extend(to_image_detections(&dl.dataset.data, &batch.indices, found, sz));
    }
    Ok(dets)
}

/// Seconds [`crate::metrics::Metric::Map`] adds to one validation pass of `learn`'s validation
/// loader (the decoding, NMS and scoring, not the forward passes the loss needs anyway), and the
/// mAP it gives.
pub fn map_cost(learn: &Learner) -> Result<(f64, f64)> {
    let dl = &learn.data.val_dl;
    let mut whole = crate::metrics::WholeSetMetrics::new(&[crate::metrics::Metric::Map], &learn.model)?;
    let mut outs = vec![];
    for b in dl.iter(0) {
        let b = b?;
        outs.push((learn.predict_batch(&b.x), b.indices));
    }
    let t = std::time::Instant::now();
    for (out, indices) in &outs {
        whole.add(&learn.model, out, dl, indices)?;
    }
    let map = whole.merge(vec![], dl)?[0];
    Ok((t.elapsed().as_secs_f64(), map))
}

/// For a batch's SSD output: how many (anchor, class) boxes score over `opts.thresh` before the
/// lesson's NMS, and how many detections are left after it.
pub fn nms_counts(out: &ModelOutput, model: &Model, opts: NmfOpts) -> Result<(usize, usize)> {
    let (cfg, _) = model.ssd_parts("nms_counts")?;
    let o: &SsdOutput = out.ssd("nms_counts")?;
    let scores = o.class_logits.narrow(2, 0, cfg.n_classes).sigmoid(); // [B, A, C]
    let before = i64::try_from(scores.gt(opts.thresh as f64).sum(tch::Kind::Int64))? as usize;
    let after = model.detections(out, opts, usize::MAX)?.iter().map(Vec::len).sum();
    Ok((before, after))
}

/// Lesson 9's "receptive field", measured: how much each input pixel moves the activations of
/// one grid cell of an SSD learner's head. `x` is one normalised image `[3, sz, sz]` (a batch's
/// `x.get(i)`); the cell is `(row, col)` of the anchor grid `grid` (an index into
/// `cfg.anchors.grids`, 0 = the 4x4 grid). Returns `|d sum(|activations of the cell's k anchors|)
/// / d x|` summed over the colour channels, `[sz, sz]`, scaled to 0..1.
pub fn receptive_field(learn: &Learner, x: &tch::Tensor, grid: usize, row: usize, col: usize) -> Result<tch::Tensor> {
    let cfg = ssd_config(learn)?;
    let size = x.size();
    if size.len() != 3 || size[0] != 3 {
        return Err(Error::Shape {
            what: "receptive_field: the image".into(),
            expected: "[3, sz, sz]".into(),
            found: size,
        });
    }
    let grids = &cfg.anchors.grids;
    let g = *grids
        .get(grid)
        .ok_or_else(|| Error::Invalid(format!("receptive_field: grid {grid} of {} grids {grids:?}", grids.len())))?;
    if row >= g || col >= g {
        return Err(Error::Invalid(format!("receptive_field: cell ({row}, {col}) of a {g}x{g} grid")));
    }
    let k = cfg.anchors.k();
    let first = grids[..grid].iter().map(|g| g * g * k).sum::<usize>() + (row * g + col) * k;
    let x = x.detach().unsqueeze(0).to_device(learn.device()).set_requires_grad(true); // [1, 3, sz, sz]
    let out = learn.model.forward_t(&x, false, crate::model::N_GROUPS);
    let o = out.ssd("receptive_field")?;
    let cell = |t: &tch::Tensor| t.narrow(1, first as i64, k as i64).abs().sum(tch::Kind::Float); // the cell's k anchors
    (cell(&o.class_logits) + cell(&o.box_offsets)).backward();
    let heat = x.grad().abs().sum_dim_intlist(&[0i64, 1][..], false, tch::Kind::Float); // [sz, sz]
    let max = f64::try_from(heat.max())?;
    Ok(if max > 0.0 { heat / max } else { heat }.to_device(tch::Device::Cpu))
}

/// `fastdet predict`: the detections of a trained SSD run (a `fastdet train` folder) on every
/// image of `data`, written to `out` in the COCO results format. Returns the detections (the
/// pictures are [`crate::show::save_detections`]). The model comes from the last finished stage's
/// checkpoint alone ([`Model::load`]); the training data is opened only for a checkpoint written
/// before checkpoints described their model.
pub fn predict_run(run_dir: &Path, data: &Dataset, out: &Path, opts: NmfOpts) -> Result<Vec<Detection>> {
    let dets = run_detections(run_dir, data, opts)?;
    crate::metrics::save_coco_results(out, &dets, data)?;
    Ok(dets)
}

/// The detections of [`predict_run`] without writing them (`fastdet predict --report` scores
/// those of [`NmfOpts::evaluation`], whatever threshold the written file has).
pub fn run_detections(run_dir: &Path, data: &Dataset, opts: NmfOpts) -> Result<Vec<Detection>> {
    let cfg = TrainConfig::from_file(run_dir.join(CONFIG_FILE))?;
    let progress = RunProgress::read(&run_dir.join(PROGRESS_FILE))?;
    let last = progress
        .completed
        .last()
        .ok_or_else(|| Error::run(run_dir, "no stage is finished, so there are no weights to predict with"))?;
    let path = run_dir.join(&last.checkpoint);
    if crate::model::ModelSpec::from_tensors(&crate::model::checkpoint::read(&path)?, &path)?.is_some() {
        let m = Model::load_on(&path, cfg.device()?)?;
        if m.ssd().is_none() {
            return Err(Error::run(
                run_dir,
                format!("detections need an SSD, this run trains a {}", m.spec.describe()),
            ));
        }
        if m.spec.classes != data.classes {
            return Err(Error::run(
                run_dir,
                format!("the run was trained on classes {:?}, the data has {:?}", m.spec.classes, data.classes),
            ));
        }
        return detections_on(&m, data, cfg.bs, opts);
    }
    let mut learn = cfg.learner(run_dir)?;
    ssd_config(&learn)?;
    if learn.data.classes != data.classes {
        return Err(Error::run(
            run_dir,
            format!("the run was trained on classes {:?}, the data has {:?}", learn.data.classes, data.classes),
        ));
    }
    learn.load(&run_dir.join(&last.checkpoint).to_string_lossy())?;
    let val_tfms = learn.data.val_dl.dataset.tfms.clone();
    let ds = DetDataset::new(Arc::new(data.clone()), (0..data.len()).collect(), val_tfms, TargetKind::AllBoxes, false)?;
    let dl = DataLoader::new(ds, learn.data.val_dl.bs, false, 0, learn.device())?;
    detections(&learn, &dl, opts)
}

/// The synthetic-shapes SSD (`make ssd-synthetic`, and the last section of notebook 06): the
/// seeded set, a ResNet18 SSD trained from scratch on it, and its validation split.
pub struct SyntheticSsd {
    pub learn: Learner,
    /// The training split (the learner validates on a seeded 10 % of it while training).
    pub trn: Dataset,
    pub val: Dataset,
    pub val_dl: DataLoader,
    pub dir: PathBuf,
}

/// Where the synthetic SSD keeps its data and weights: a per-user cache every clone reuses
/// (`$FASTDET_CACHE`, else `$XDG_CACHE_HOME/fastdet`, else `~/.cache/fastdet`).
pub fn synthetic_dir() -> PathBuf {
    crate::util::cache_dir().join(format!("ssd-synthetic-v{}", synthetic::DRAWING_VERSION + 1))
}

/// The trained synthetic SSD shipped with fastdet (`assets/models/ssd_synthetic.safetensors`,
/// fp16): `make ssd-synthetic` trains it from its seed and writes it, so nobody waits for the
/// training. Its ResNet18 body (torchvision's names) is a backbone trained on shapes, which the
/// notebooks' shape models start from as the lesson's start from ImageNet. `None` when the file
/// is missing (a build outside the source tree).
pub fn synthetic_body() -> Option<PathBuf> {
    let p = shipped_synthetic_weights();
    p.is_file().then_some(p)
}

/// Where the trained synthetic SSD is shipped: `assets/models/ssd_synthetic.safetensors` in the
/// source tree (weights in fp16), with what it scored beside it (`ssd_synthetic.json`).
pub fn shipped_synthetic_weights() -> PathBuf {
    crate::util::crate_root().join("assets").join("models").join("ssd_synthetic.safetensors")
}

/// What the shipped synthetic SSD scored when `make ssd-synthetic` wrote it (the `.json` beside
/// the weights): its VOC07 mAP on the validation split, and how it was trained.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShippedSsd {
    /// VOC07 mAP on the synthetic validation split, detections scoring at least 0.01, computed
    /// with the fp16 weights as shipped.
    pub voc07_map: f64,
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
    pub opts: String,
    /// The libtorch version and CPU threads of the training (bit-for-bit retraining needs both).
    pub torch: String,
    pub threads: i32,
}

impl ShippedSsd {
    /// The statement beside `weights` (`ssd_synthetic.json`).
    pub fn read(weights: &Path) -> Result<Self> {
        let path = weights.with_extension("json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}

/// The synthetic SSD's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticOpts {
    /// Input (and image) size: 160 gives the lesson's head grids of 3x3, 2x2 and 1x1 (128 gives
    /// only 2x2 and 1x1, too coarse for shapes a quarter of the image).
    pub sz: u32,
    /// Training images generated (10% of them validate during training).
    pub n_train: usize,
    pub n_val: usize,
    pub matching: Matching,
    pub bs: usize,
    /// The head's dropout (`drop` and `conv_drop`): the lesson's 0.4 regularises VOC over many
    /// epochs; a few epochs on fresh shapes underfit with it.
    pub drop: f64,
    /// The anchors' zooms and ratios (the lesson's 189 by default; fitted ones from
    /// [`crate::anchors::fit_anchors`]); their grids become those the head makes at `sz`.
    pub anchors: AnchorConfig,
    /// Seed of the initial weights and of the batches' order and augmentation (the set itself is
    /// always drawn with seed 0).
    pub seed: u64,
}

impl Default for SyntheticOpts {
    fn default() -> Self {
        Self {
            sz: 160,
            n_train: 2400,
            n_val: 160,
            matching: Matching::NoGtLost,
            bs: 32,
            drop: 0.1,
            anchors: AnchorConfig::lesson_189(),
            seed: 0,
        }
    }
}

impl SyntheticSsd {
    const WEIGHTS: &'static str = "ssd_synthetic";

    /// The default settings ([`SyntheticOpts`]).
    pub fn new(dir: &Path, device: tch::Device) -> Result<Self> {
        Self::with_opts(dir, device, SyntheticOpts::default())
    }

    /// Write the set under `dir` (unless it is there already) and build an untrained learner.
    pub fn with_opts(dir: &Path, device: tch::Device, o: SyntheticOpts) -> Result<Self> {
        let data_dir = dir.join(format!("data-{}px-{}", o.sz, o.n_train));
        let cfg = SyntheticConfig {
            n_train: o.n_train,
            n_val: o.n_val,
            size: o.sz,
            max_objects: 3,
            min_frac: 0.25,
            max_frac: 0.6,
            seed: 0,
        };
        let pascal = if data_dir.join("pascal_val2007.json").is_file() {
            Pascal::open(&data_dir)?
        } else {
            synthetic::write(&data_dir, &cfg)?
        };
        let (trn, val) = (pascal.json("train")?, pascal.json("val")?);
        let lesson = SsdConfig::lesson_189(trn.classes.len() as i64);
        let mut ssd = SsdConfig { anchors: o.anchors.clone(), ..lesson }.fitted_to(o.sz).with_matching(o.matching);
        (ssd.drop, ssd.conv_drop) = (o.drop, o.drop);
        let tfms = tfms_from_model(o.sz, vec![RandomFlip::default().into()], CropType::No, TfmY::Coord)?;
        let md = ImageData::from_dataset(
            trn.clone(),
            TargetKind::AllBoxes,
            tfms.clone(),
            DataOpts { val_pct: 0.1, seed: o.seed, ..DataOpts::new(o.bs, device) },
        )?;
        tch::manual_seed(o.seed as i64);
        let opts = LearnerOpts { arch: Arch::ResNet18, weights: None, models_dir: dir.join("models") };
        let mut learn = Learner::new(md, TaskParts::ssd(ssd, o.sz), opts)?;
        learn.unfreeze();
        let val_ds =
            DetDataset::new(Arc::new(val.clone()), (0..val.len()).collect(), tfms.1, TargetKind::AllBoxes, false)?;
        let val_dl = DataLoader::new(val_ds, o.bs, false, 0, device)?;
        Ok(Self { learn, trn, val, val_dl, dir: dir.to_path_buf() })
    }

    /// The weights file [`SyntheticSsd::train`] writes (fp32, in the per-user cache).
    pub fn weights(&self) -> PathBuf {
        self.learn.models_dir().join(format!("{}.safetensors", Self::WEIGHTS))
    }

    /// Train from scratch (one CLR cycle of `epochs`, div 10, cut 5) and save the weights.
    pub fn train(&mut self, lr: f64, epochs: usize) -> Result<()> {
        self.learn.fit(lr, 1, FitOpts::clr(epochs, 10., 5))?;
        self.learn.save(Self::WEIGHTS)?;
        Ok(())
    }

    /// Load the trained weights shipped with fastdet ([`shipped_synthetic_weights`]).
    pub fn load_trained(&mut self) -> Result<()> {
        self.learn.load(&shipped_synthetic_weights().to_string_lossy())
    }

    /// Write the weights in fp16 to `path` (safetensors; what fastdet ships) and load them back,
    /// so that what is evaluated next is exactly what the file holds.
    pub fn ship(&mut self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, tch::Tensor)> = self
            .learn
            .model
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_kind(tch::Kind::Half).to_device(tch::Device::Cpu)))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        crate::util::write_atomic_with(path, |tmp| {
            tch::Tensor::write_safetensors(&named, tmp)
                .map_err(|e| Error::checkpoint(tmp, format!("cannot save weights: {e}")))
        })?;
        self.learn.load(&path.to_string_lossy())
    }

    /// Detections on the validation split with scores over `thresh` (boxes in image pixels).
    pub fn detections(&self, thresh: f32) -> Result<Vec<crate::metrics::Detection>> {
        detections(&self.learn, &self.val_dl, NmfOpts { thresh, ..NmfOpts::evaluation() })
    }

    /// VOC07 (or another) mAP on the validation split, detections with scores over `thresh`.
    pub fn evaluate(&self, thresh: f32, metric: ApMetric) -> Result<ApTable> {
        evaluate(&self.val, &self.detections(thresh)?, metric)
    }
}
