//! Datasets of the lesson's targets and a loader that turns them into tch batches.
//!
//! - [`TargetKind`] picks the dependent variable: the class of the largest object (lesson 8's
//!   classifier), its box (`continuous=True`), box and class together (`ConcatLblDataset`), the
//!   set of classes (multi-label), or all boxes and classes (SSD).
//! - [`DetDataset`] = annotations + a subset of images + a transform pipeline; decoded images
//!   scaled to the pipeline's size are cached in memory (the first, deterministic step).
//! - [`DataLoader`] batches a dataset: shuffling with a seed per epoch, decoding and augmenting
//!   the images of a batch in parallel (rayon), and preparing the next batches on a background
//!   thread while the current one trains.
//! - [`ImageData`] is fastai's `ModelData`: `trn_dl`, `val_dl` and `aug_dl` (the validation set
//!   with training augmentations) from one dataset, one validation split and one seed.
//!
//! Augmentation is deterministic: sample `i` of epoch `e` is augmented with a seed made from the
//! loader's seed, `e` and `i`, whatever thread does the work.

use super::{get_cv_idxs, Dataset};
use crate::boxes::BBox;
use crate::error::{Error, Result};
use crate::transforms::{ScaledImage, Tfms};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::{mpsc, Arc, OnceLock};
use tch::{Device, Kind, Tensor};

/// The dependent variable of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TargetKind {
    /// Class of the largest object (lesson 8, `lrg.csv`).
    LargestClass,
    /// Box of the largest object, `[top, left, bottom, right]` in output pixels (`bb.csv`).
    LargestBox,
    /// Box and class of the largest object (`ConcatLblDataset`).
    BoxClass,
    /// Multi-hot vector of the classes present (`mc.csv`).
    MultiLabel,
    /// All boxes and classes, padded per batch (SSD, `mbb.csv`).
    AllBoxes,
}

/// The target of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Class(usize),
    Box(BBox),
    BoxClass(BBox, usize),
    Labels(Vec<usize>),
    Boxes(Vec<BBox>, Vec<usize>),
}

/// One transformed sample: normalised CHW image and its target.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: usize,
    pub image: Vec<f32>,
    pub sz: u32,
    pub target: Target,
}

impl Sample {
    pub fn to_rgb(&self) -> RgbImage {
        crate::transforms::denorm_chw(&self.image, self.sz)
    }
}

type Cache = Arc<Vec<OnceLock<ScaledImage>>>;

/// Annotations, the images used, a transform pipeline and what to predict.
#[derive(Clone)]
pub struct DetDataset {
    pub data: Arc<Dataset>,
    /// Indices into `data.images`.
    pub indices: Vec<usize>,
    pub tfms: Tfms,
    pub target: TargetKind,
    cache: Option<Cache>,
}

impl DetDataset {
    /// `indices` select images of `data`; `cache` keeps each decoded image, scaled to the
    /// pipeline's size (or a little larger: [`ScaledImage`]), in memory after its first use
    /// (~150-230 KB per image at 224).
    pub fn new(data: Arc<Dataset>, indices: Vec<usize>, tfms: Tfms, target: TargetKind, cache: bool) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
            return Err(Error::Invalid(format!(
                "image index {bad} out of range: the dataset has {} images",
                data.len()
            )));
        }
        let cache = cache.then(|| Arc::new((0..data.len()).map(|_| OnceLock::new()).collect()));
        Ok(Self { data, indices, tfms, target, cache })
    }

    /// The same images and cache with another pipeline (e.g. training augmentations on the
    /// validation set: fastai's `aug_dl`).
    pub fn with_tfms(&self, tfms: Tfms) -> Self {
        let cache = if tfms.sz == self.tfms.sz {
            self.cache.clone()
        } else {
            self.cache.as_ref().map(|c| Arc::new((0..c.len()).map(|_| OnceLock::new()).collect()))
        };
        Self { tfms, cache, ..self.clone() }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.data.classes.len()
    }

    /// `f` of image `data.images[idx]` decoded for a short side of `sz`
    /// ([`Dataset::image_for_warp`]; from the cache when there is one: no copy).
    fn with_scaled<R>(&self, idx: usize, f: impl FnOnce(&ScaledImage) -> R) -> Result<R> {
        let make = || self.data.image_for_warp(idx, self.tfms.sz);
        match &self.cache {
            None => Ok(f(&make()?)),
            Some(cache) => {
                if let Some(v) = cache[idx].get() {
                    return Ok(f(v));
                }
                let v = make()?;
                Ok(f(cache[idx].get_or_init(|| v)))
            }
        }
    }

    /// Sample `i` (position in `indices`), augmented with `seed`.
    pub fn get(&self, i: usize, seed: u64) -> Result<Sample> {
        let mut image = vec![0f32; 3 * (self.tfms.sz * self.tfms.sz) as usize];
        let (index, target) = self.get_into(i, seed, &mut image)?;
        Ok(Sample { index, image, sz: self.tfms.sz, target })
    }

    /// [`DetDataset::get`] writing the normalised CHW image into `out` (`3 * sz * sz` floats,
    /// its place in a batch); returns the image's index in `data` and the target.
    pub fn get_into(&self, i: usize, seed: u64, out: &mut [f32]) -> Result<(usize, Target)> {
        let idx = *self.indices.get(i).ok_or_else(|| {
            Error::Invalid(format!("sample {i} out of range: the dataset has {} samples", self.len()))
        })?;
        let ann = self.data.annotations(idx);
        let rec = &self.data.images[idx];
        let largest = rec.largest().map(|o| (o.bbox, o.class));
        let (boxes, classes): (Vec<BBox>, Vec<usize>) = match self.target {
            TargetKind::AllBoxes => ann.iter().copied().unzip(),
            TargetKind::MultiLabel | TargetKind::LargestClass => (vec![], vec![]),
            TargetKind::LargestBox | TargetKind::BoxClass => {
                largest.map(|(b, c)| (vec![b], vec![c])).unwrap_or_default()
            }
        };
        let (boxes, kept) = self.with_scaled(idx, |scaled| self.tfms.apply_warp_into(scaled, &boxes, seed, out))?;
        let no_object = || Error::Annotation {
            path: self.data.source.clone(),
            image: rec.id.to_string(),
            problem: "has no (non-difficult) object, so no largest-object target".into(),
        };
        // A single box pushed out of the picture by the augmentation becomes the empty box 0 0 0 0.
        let single = |boxes: &[BBox]| boxes.first().copied().unwrap_or(BBox::new(0., 0., 0., 0.));
        let target = match self.target {
            TargetKind::LargestClass => Target::Class(largest.ok_or_else(no_object)?.1),
            TargetKind::LargestBox => {
                largest.ok_or_else(no_object)?;
                Target::Box(single(&boxes))
            }
            TargetKind::BoxClass => Target::BoxClass(single(&boxes), largest.ok_or_else(no_object)?.1),
            TargetKind::MultiLabel => {
                let mut labels: Vec<usize> = ann.iter().map(|a| a.1).collect();
                labels.sort_unstable();
                labels.dedup();
                Target::Labels(labels)
            }
            TargetKind::AllBoxes => Target::Boxes(boxes, kept.iter().map(|&k| classes[k]).collect()),
        };
        Ok((idx, target))
    }
}

/// The targets of a batch as tensors.
#[derive(Debug)]
pub enum BatchTarget {
    /// `[B]` int64
    Class(Tensor),
    /// `[B, 4]` float, `top, left, bottom, right` in output pixels
    Box(Tensor),
    /// `[B, 4]` float and `[B]` int64
    BoxClass { bbox: Tensor, class: Tensor },
    /// `[B, C]` float multi-hot
    MultiLabel(Tensor),
    /// `[B, N, 4]` float and `[B, N]` int64, each image's objects at the end and zeros in front
    /// (the lesson's `pre_pad`); `n_objects` `[B]` int64 counts the real rows.
    Boxes { bbox: Tensor, class: Tensor, n_objects: Tensor },
}

impl BatchTarget {
    /// The batch size.
    pub fn len(&self) -> i64 {
        match self {
            BatchTarget::Class(t) | BatchTarget::Box(t) | BatchTarget::MultiLabel(t) => {
                t.size().first().copied().unwrap_or(0)
            }
            BatchTarget::BoxClass { class, .. } => class.size().first().copied().unwrap_or(0),
            BatchTarget::Boxes { n_objects, .. } => n_objects.size().first().copied().unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The variant's name, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            BatchTarget::Class(_) => "Class",
            BatchTarget::Box(_) => "Box",
            BatchTarget::BoxClass { .. } => "BoxClass",
            BatchTarget::MultiLabel(_) => "MultiLabel",
            BatchTarget::Boxes { .. } => "Boxes",
        }
    }
}

/// A batch: images `[B, 3, sz, sz]` (normalised float), targets, and which images they are.
#[derive(Debug)]
pub struct Batch {
    pub x: Tensor,
    pub y: BatchTarget,
    /// Indices into the dataset's images.
    pub indices: Vec<usize>,
}

impl Batch {
    /// The batch's images back as RGB pictures (the lesson's `denorm`).
    pub fn images(&self) -> Result<Vec<RgbImage>> {
        crate::transforms::denorm(&self.x)
    }

    /// The boxes and classes of sample `i`, padding removed (any target kind with boxes).
    pub fn objects(&self, i: usize) -> Result<Vec<(BBox, Option<usize>)>> {
        let row = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(Vec::try_from(t.get(i as i64).to_kind(Kind::Float).flatten(0, -1))?)
        };
        let to_box = |v: &[f32]| BBox::new(v[0], v[1], v[2], v[3]);
        Ok(match &self.y {
            BatchTarget::Box(b) => vec![(to_box(&row(b)?), None)],
            BatchTarget::BoxClass { bbox, class } => {
                vec![(to_box(&row(bbox)?), Some(i64::try_from(class.get(i as i64))? as usize))]
            }
            BatchTarget::Boxes { bbox, class, n_objects } => {
                let n = i64::try_from(n_objects.get(i as i64))? as usize;
                let b = row(bbox)?;
                let c: Vec<i64> = Vec::try_from(class.get(i as i64).flatten(0, -1))?;
                let total = c.len();
                (total - n..total).map(|k| (to_box(&b[k * 4..k * 4 + 4]), Some(c[k] as usize))).collect()
            }
            BatchTarget::Class(_) | BatchTarget::MultiLabel(_) => vec![],
        })
    }
}

/// Collate samples into a batch on `device`.
pub fn collate(samples: &[Sample], kind: TargetKind, num_classes: usize, device: Device) -> Batch {
    let b = samples.len() as i64;
    let sz = samples.first().map(|s| s.sz).unwrap_or(1) as i64;
    let mut pixels = Vec::with_capacity(samples.len() * (3 * sz * sz) as usize);
    samples.iter().for_each(|s| pixels.extend_from_slice(&s.image));
    let x = crate::device::to_device_async(Tensor::from_slice(&pixels).view([b, 3, sz, sz]), device);
    let targets: Vec<&Target> = samples.iter().map(|s| &s.target).collect();
    let y = collate_targets(&targets, kind, num_classes, device);
    Batch { x, y, indices: samples.iter().map(|s| s.index).collect() }
}

/// The targets of a batch as tensors on `device`.
fn collate_targets(targets: &[&Target], kind: TargetKind, num_classes: usize, device: Device) -> BatchTarget {
    let b = targets.len() as i64;
    let boxes = |f: &dyn Fn(&Target) -> BBox| {
        let v: Vec<f32> = targets.iter().flat_map(|t| f(t).to_array()).collect();
        Tensor::from_slice(&v).view([b, 4]).to_device(device)
    };
    let classes = |f: &dyn Fn(&Target) -> usize| {
        let v: Vec<i64> = targets.iter().map(|t| f(t) as i64).collect();
        Tensor::from_slice(&v).to_device(device)
    };
    match kind {
        TargetKind::LargestClass => BatchTarget::Class(classes(&|t| if let Target::Class(c) = t { *c } else { 0 })),
        TargetKind::LargestBox => {
            BatchTarget::Box(boxes(&|t| if let Target::Box(b) = t { *b } else { BBox::new(0., 0., 0., 0.) }))
        }
        TargetKind::BoxClass => BatchTarget::BoxClass {
            bbox: boxes(&|t| if let Target::BoxClass(b, _) = t { *b } else { BBox::new(0., 0., 0., 0.) }),
            class: classes(&|t| if let Target::BoxClass(_, c) = t { *c } else { 0 }),
        },
        TargetKind::MultiLabel => {
            let mut v = vec![0f32; targets.len() * num_classes];
            for (i, t) in targets.iter().enumerate() {
                if let Target::Labels(ls) = t {
                    ls.iter().for_each(|&c| v[i * num_classes + c] = 1.0);
                }
            }
            BatchTarget::MultiLabel(Tensor::from_slice(&v).view([b, num_classes as i64]).to_device(device))
        }
        TargetKind::AllBoxes => {
            let objs: Vec<(&[BBox], &[usize])> = targets
                .iter()
                .map(
                    |t| if let Target::Boxes(bx, cl) = t { (bx.as_slice(), cl.as_slice()) } else { (&[][..], &[][..]) },
                )
                .collect();
            let n = objs.iter().map(|o| o.0.len()).max().unwrap_or(0).max(1);
            let mut bb = vec![0f32; targets.len() * n * 4];
            let mut cl = vec![0i64; targets.len() * n];
            for (i, (bx, c)) in objs.iter().enumerate() {
                let pad = n - bx.len();
                for (k, (b, &cls)) in bx.iter().zip(c.iter()).enumerate() {
                    bb[(i * n + pad + k) * 4..][..4].copy_from_slice(&b.to_array());
                    cl[i * n + pad + k] = cls as i64;
                }
            }
            let counts: Vec<i64> = objs.iter().map(|o| o.0.len() as i64).collect();
            BatchTarget::Boxes {
                bbox: Tensor::from_slice(&bb).view([b, n as i64, 4]).to_device(device),
                class: Tensor::from_slice(&cl).view([b, n as i64]).to_device(device),
                n_objects: Tensor::from_slice(&counts).to_device(device),
            }
        }
    }
}

/// Batches of a [`DetDataset`]. See the module docs.
#[derive(Clone)]
pub struct DataLoader {
    pub dataset: DetDataset,
    pub bs: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub device: Device,
    /// Batches prepared ahead on the background thread.
    pub prefetch: usize,
}

/// splitmix64: a well-mixed seed from a few numbers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl DataLoader {
    pub fn new(dataset: DetDataset, bs: usize, shuffle: bool, seed: u64, device: Device) -> Result<Self> {
        if bs == 0 {
            return Err(Error::Invalid("DataLoader: batch size bs must be at least 1".into()));
        }
        Ok(Self { dataset, bs, shuffle, seed, device, prefetch: 2 })
    }

    /// Number of batches per epoch (the last one may be smaller; see [`DataLoader::batches`]).
    pub fn len(&self) -> usize {
        let n = self.dataset.len().div_ceil(self.bs);
        if self.folds_last(self.dataset.len()) {
            n - 1
        } else {
            n
        }
    }

    /// Whether the last batch, of one image, goes into the batch before: for a training
    /// (shuffled) loader only, since BatchNorm in training mode cannot normalise a batch of one
    /// (its variance is NaN, which would then reach the running statistics).
    fn folds_last(&self, n: usize) -> bool {
        self.shuffle && self.bs > 1 && n > self.bs && n % self.bs == 1
    }

    /// The batches of an epoch's `order`: `bs` images each, the last one smaller; a training
    /// loader folds a last batch of one image into the batch before (`bs + 1` images).
    pub fn batches<'a>(&self, order: &'a [usize]) -> Vec<&'a [usize]> {
        let mut v: Vec<&[usize]> = order.chunks(self.bs).collect();
        if self.folds_last(order.len()) {
            v.pop();
            let start = (v.len() - 1) * self.bs;
            if let Some(last) = v.last_mut() {
                *last = &order[start..];
            }
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }

    /// The order of samples in `epoch` (shuffled with the seed and epoch, or in order).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(epoch))));
        }
        order
    }

    /// The augmentation seed of sample `i` in `epoch`.
    pub fn sample_seed(&self, epoch: u64, i: usize) -> u64 {
        mix(self.seed ^ mix(epoch.wrapping_mul(0x1_0000_0001) ^ mix(i as u64)))
    }

    /// Batch `k` of `epoch`, made now on this thread (with rayon across the samples).
    pub fn batch(&self, epoch: u64, k: usize) -> Result<Batch> {
        let order = self.order(epoch);
        let chunk =
            self.batches(&order).into_iter().nth(k).ok_or_else(|| {
                Error::Invalid(format!("batch {k} out of range: the loader has {} batches", self.len()))
            })?;
        make_batch(&self.dataset, chunk, |i| self.sample_seed(epoch, i), self.device)
    }

    /// The samples at `positions` of the dataset as one batch, as epoch 0 makes them (for a
    /// validation loader: the pipeline without augmentation).
    pub fn batch_of(&self, positions: &[usize]) -> Result<Batch> {
        if positions.is_empty() {
            return Err(Error::Invalid("batch_of: no samples asked for".into()));
        }
        make_batch(&self.dataset, positions, |i| self.sample_seed(0, i), self.device)
    }

    /// The first batch of epoch 0 (fastai's `next(iter(md.trn_dl))`).
    pub fn one_batch(&self) -> Result<Batch> {
        self.batch(0, 0)
    }

    /// The batches of `epoch`, prepared `prefetch` ahead on a background thread.
    pub fn iter(&self, epoch: u64) -> BatchIter {
        let (tx, rx) = mpsc::sync_channel(self.prefetch.max(1));
        let me = self.clone();
        let handle = std::thread::spawn(move || {
            let order = me.order(epoch);
            for chunk in me.batches(&order) {
                // A panic here (a CUDA allocation failing, say) must not end the epoch silently.
                let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    make_batch(&me.dataset, chunk, |i| me.sample_seed(epoch, i), me.device)
                }))
                .unwrap_or_else(|panic| {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(Error::Invalid(format!("making a batch of epoch {epoch} failed: {msg}")))
                });
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        BatchIter { rx, _handle: handle, remaining: self.len() }
    }
}

/// The samples `chunk` of `ds` as a batch: each image augmented straight into its place in the
/// batch tensor, in parallel (pinned host memory when the batch goes to a GPU).
fn make_batch(
    ds: &DetDataset,
    chunk: &[usize],
    seed_of: impl Fn(usize) -> u64 + Sync,
    device: Device,
) -> Result<Batch> {
    let sz = ds.tfms.sz as i64;
    let per = (3 * sz * sz) as usize;
    let mut x = Tensor::empty([chunk.len() as i64, 3, sz, sz], (Kind::Float, Device::Cpu));
    if device.is_cuda() {
        x = x.pin_memory(device);
    }
    // SAFETY: `x` is a new contiguous float tensor of `chunk.len() * per` elements that nothing
    // else refers to while `pixels` lives.
    let pixels = unsafe { std::slice::from_raw_parts_mut(x.data_ptr() as *mut f32, chunk.len() * per) };
    let done: Vec<(usize, Target)> = chunk
        .par_iter()
        .zip(pixels.par_chunks_mut(per))
        .map(|(&i, out)| ds.get_into(i, seed_of(i), out))
        .collect::<Result<_>>()?;
    // The targets' checks happen here, on the host, so that the loss reads nothing back.
    let bad = done.iter().find_map(|(i, t)| match t {
        Target::Boxes(_, cl) => cl.iter().find(|&&c| c >= ds.num_classes()).map(|&c| (*i, c)),
        _ => None,
    });
    if let Some((i, c)) = bad {
        return Err(Error::Invalid(format!("image {i}: class {c}, but the dataset has {} classes", ds.num_classes())));
    }
    let targets: Vec<&Target> = done.iter().map(|d| &d.1).collect();
    let y = collate_targets(&targets, ds.target, ds.num_classes(), device);
    let x = if device.is_cuda() { x.to_device_(device, Kind::Float, true, false) } else { x };
    Ok(Batch { x, y, indices: done.iter().map(|d| d.0).collect() })
}

/// Let glibc's malloc keep freed batches for the next ones instead of returning them to the
/// system: a setting of the whole process, so the program chooses it, once, before training
/// (`fastdet`'s `main`, the notebooks' first cell, the loader benchmark and `ssd_synthetic`);
/// building a [`DataLoader`] leaves malloc alone. Later calls do nothing, and so does every call
/// with `FASTDET_MALLOC=default` or off glibc.
///
/// A batch of 64 at 224 is 38 MB of floats, over glibc's largest `mmap` threshold (32 MB), so by
/// default every batch is a fresh `mmap`: 9,400 page faults, each zeroing and charging a page,
/// and an `munmap` when it is dropped. With the threshold at 256 MB and the trim threshold at
/// 512 MB, the next batch reuses the last one's memory: measured here, the loader from its
/// cache went from about 2,100 to 2,300-3,800 images/s on two cores, and from JPEG from about
/// 700 to 900. The cost: up to 512 MB of freed memory stays with the process.
pub fn keep_freed_batches() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("FASTDET_MALLOC").is_ok_and(|v| v == "default") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator parameters; a refusal (0) leaves the defaults.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    });
}

/// Iterator over the batches of one epoch; an error (a corrupt image, say) ends it.
pub struct BatchIter {
    rx: mpsc::Receiver<Result<Batch>>,
    _handle: std::thread::JoinHandle<()>,
    remaining: usize,
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        let item = self.rx.recv().ok()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// fastai's `ModelData` for one dataset: training, validation and augmented-validation loaders.
#[derive(Clone)]
pub struct ImageData {
    pub trn_dl: DataLoader,
    pub val_dl: DataLoader,
    /// The validation images with the training augmentations (fastai's `aug_dl`).
    pub aug_dl: DataLoader,
    pub classes: Vec<String>,
}

/// How [`ImageData::from_dataset`] splits and batches a dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataOpts {
    /// Batch size.
    pub bs: usize,
    /// Share of the images held out for validation (the lesson's 0.2).
    pub val_pct: f64,
    /// Seed of the validation split (`get_cv_idxs(n, val_pct, 42)`).
    pub split_seed: u32,
    /// Seed of the shuffling and the augmentations.
    pub seed: u64,
    pub device: Device,
}

impl DataOpts {
    /// Batches of `bs` on `device`, the lesson's split (20% with seed 42), seed 0.
    pub fn new(bs: usize, device: Device) -> Self {
        Self { bs, val_pct: 0.2, split_seed: 42, seed: 0, device }
    }
}

impl ImageData {
    /// Split `data` with the seeded `get_cv_idxs(n, val_pct, split_seed)`, build the three
    /// loaders with `(trn_tfms, val_tfms)` (from [`crate::transforms::tfms_from_model`]).
    pub fn from_dataset(data: Dataset, target: TargetKind, tfms: (Tfms, Tfms), opts: DataOpts) -> Result<Self> {
        let DataOpts { val_pct, split_seed, .. } = opts;
        let data = Arc::new(data);
        let val_idxs = get_cv_idxs(data.len(), val_pct, split_seed)?;
        let mut is_val = vec![false; data.len()];
        val_idxs.iter().for_each(|&i| is_val[i] = true);
        let trn_idxs: Vec<usize> = (0..data.len()).filter(|&i| !is_val[i]).collect();
        Self::from_parts((data.clone(), trn_idxs), (data, val_idxs), target, tfms, opts)
    }

    /// Train on all of `trn` and validate on all of `val` (a split the data gives, such as
    /// YOLO's `images/val`); `opts.val_pct` and `split_seed` are not used. The two must have
    /// the same classes.
    pub fn from_split(
        trn: Dataset,
        val: Dataset,
        target: TargetKind,
        tfms: (Tfms, Tfms),
        opts: DataOpts,
    ) -> Result<Self> {
        if trn.classes != val.classes {
            return Err(Error::Dataset {
                path: val.source.clone(),
                problem: format!("has other classes than the training set {}", trn.source.display()),
            });
        }
        let (n_trn, n_val) = (trn.len(), val.len());
        Self::from_parts(
            (Arc::new(trn), (0..n_trn).collect()),
            (Arc::new(val), (0..n_val).collect()),
            target,
            tfms,
            opts,
        )
    }

    /// The data of a dataset found on disk ([`super::DataSource`]), split as it says: a
    /// source with a `train` split and a validation split (`val`, `valid`, `validation` or
    /// `test`, the first found) trains and validates on those ([`ImageData::from_split`]); a
    /// source of one set is split with the lesson's seeded `opts.val_pct`
    /// ([`ImageData::from_dataset`]). A source with splits but none of those names is an error
    /// that lists its splits.
    pub fn from_source(
        source: &super::DataSource,
        target: TargetKind,
        tfms: (Tfms, Tfms),
        opts: DataOpts,
    ) -> Result<Self> {
        if source.whole.is_some() {
            return Self::from_dataset(source.open("all")?, target, tfms, opts);
        }
        let names = source.split_names();
        let val = ["val", "valid", "validation", "test"].into_iter().find(|v| names.contains(v));
        match (names.contains(&"train"), val) {
            (true, Some(val)) => Self::from_split(source.open("train")?, source.open(val)?, target, tfms, opts),
            _ => Err(Error::Dataset {
                path: source.path.clone(),
                problem: format!(
                    "has the splits {}: training needs \"train\" and a validation split (val, valid, validation or test)",
                    names.join(", ")
                ),
            }),
        }
    }

    fn from_parts(
        (trn_data, trn_idxs): (Arc<Dataset>, Vec<usize>),
        (val_data, val_idxs): (Arc<Dataset>, Vec<usize>),
        target: TargetKind,
        tfms: (Tfms, Tfms),
        opts: DataOpts,
    ) -> Result<Self> {
        let DataOpts { bs, seed, device, .. } = opts;
        let data = trn_data.clone();
        let (trn_tfms, val_tfms) = tfms;
        let trn = DetDataset::new(trn_data, trn_idxs, trn_tfms.clone(), target, true)?;
        let val = DetDataset::new(val_data, val_idxs, val_tfms, target, true)?;
        let aug = val.with_tfms(trn_tfms);
        Ok(Self {
            trn_dl: DataLoader::new(trn, bs, true, seed, device)?,
            val_dl: DataLoader::new(val, bs, false, seed, device)?,
            aug_dl: DataLoader::new(aug, bs, false, seed.wrapping_add(1), device)?,
            classes: data.classes.clone(),
        })
    }
}
