//! A model as one value: [`Model`] knows what it predicts, its classes, its input size, its
//! network and (for an SSD) its anchors, built once; it returns typed outputs
//! ([`ModelOutput`]), computes its own loss and detections, and saves and loads itself (a
//! checkpoint carries its [`ModelSpec`], so [`Model::load`] needs no training data).
//!
//! - [`net`]: the network, a ResNet body ([`resnet`], torchvision's names) and one of lesson 8's
//!   heads ([`HeadKind`]) or the SSD's, in fastai's three layer groups;
//! - [`ssd`]: lesson 9's SSD: its config ([`SsdConfig`]), heads and output ([`SsdOutput`]);
//!   [`ssd_loss`]: matching anchors to objects and the SSD's loss;
//! - [`loss`]: what a model minimises ([`Loss`]), lesson 8's losses written out;
//! - [`output`]: [`ModelOutput`]; [`checkpoint`]: the spec and the checkpoint file;
//!   [`predict`]: one picture in, a [`Prediction`] in its own pixels out;
//!   [`weights`]: ImageNet backbones and checkpoint weights from files.

pub mod checkpoint;
pub mod loss;
pub mod net;
pub mod output;
pub mod predict;
pub mod resnet;
pub mod ssd;
pub mod ssd_loss;
pub mod weights;

pub use checkpoint::{ModelSpec, SPEC_KEY, SPEC_VERSION};
pub use loss::Loss;
pub use net::{group_of, pytorch_default_init, ConvModel, Head, HeadKind, N_GROUPS};
pub use output::ModelOutput;
pub use predict::{to_original, Prediction};
pub use resnet::{feature_side, Arch, ResNetBody};
pub use ssd::{SsdConfig, SsdOutput};
pub use weights::{copy_all_converting, count_params, find_weights, load_backbone, read_state_dict};

use crate::anchors::{Anchors, Decoded};
use crate::data::BatchTarget;
use crate::error::{Error, Result};
use crate::nms::{nms_detections, NmfOpts, ScoredBox};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// A model: what it is ([`ModelSpec`]), its weights and its network, and an SSD's anchors.
pub struct Model {
    pub spec: ModelSpec,
    pub vs: nn::VarStore,
    pub net: ConvModel,
    /// An SSD's anchors, on the model's device (built once, with the model).
    anchors: Option<Anchors>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({})", self.spec.describe())
    }
}

impl Model {
    /// A model of `spec` on `device`, its weights freshly initialised.
    pub fn new(spec: ModelSpec, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let net = ConvModel::new(&vs, spec.arch, spec.head.clone(), spec.sz as i64);
        let anchors = match &spec.head {
            HeadKind::Ssd(cfg) => Some(Anchors::new(&cfg.anchors, device)),
            _ => None,
        };
        Self { spec, vs, net, anchors }
    }

    /// The model of a checkpoint, on the default device (CUDA if there is one).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_on(path, crate::device::default_device())
    }

    /// The model of a checkpoint on `device`. A checkpoint written before checkpoints held their
    /// spec is an error that says how to load it (into a learner built as it was).
    pub fn load_on(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = path.as_ref();
        let file = checkpoint::read(path)?;
        let spec = ModelSpec::from_tensors(&file, path)?.ok_or_else(|| {
            Error::checkpoint(
                path,
                "it holds weights only, no description of its model (written by an older fastdet): \
                 build the learner it came from and call learn.load(..)",
            )
        })?;
        let mut m = Self::new(spec, device);
        copy_all_converting(&mut m.vs, &file, path)?;
        Ok(m)
    }

    /// Save the weights and the spec to `path` (safetensors), atomically: a synced temporary
    /// file renamed over the old one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::util::write_atomic_with(path.as_ref(), |tmp| checkpoint::write(tmp, &self.vs, &self.spec))
    }

    /// Copy every weight from a checkpoint file (strict: every variable, right shapes; fp16
    /// files are converted).
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = checkpoint::read(path)?;
        copy_all_converting(&mut self.vs, &file, path)
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Class names, in the order of the class outputs.
    pub fn classes(&self) -> &[String] {
        &self.spec.classes
    }

    /// Input size: images are `sz x sz`.
    pub fn sz(&self) -> u32 {
        self.spec.sz
    }

    /// An SSD's config (anchors, head, matching, class loss); `None` for the other models.
    pub fn ssd(&self) -> Option<&SsdConfig> {
        self.spec.ssd()
    }

    /// An SSD's config and anchors, else an error saying `what` needs an SSD.
    pub fn ssd_parts(&self, what: &str) -> Result<(&SsdConfig, &Anchors)> {
        let cfg = self.spec.ssd_config(what)?;
        Ok((cfg, self.anchors.as_ref().expect("an SSD model has anchors")))
    }

    /// An SSD's anchors.
    pub fn anchors(&self) -> Option<&Anchors> {
        self.anchors.as_ref()
    }

    /// Change an SSD's loss settings (matching rule, class loss, positive IoU), which change no
    /// layer; the anchors, classes and head layers must stay as they are. Nothing for the other
    /// models.
    pub fn configure_ssd(&mut self, f: impl Fn(&mut SsdConfig)) -> Result<()> {
        let HeadKind::Ssd(cfg) = &self.spec.head else { return Ok(()) };
        let mut new = cfg.clone();
        f(&mut new);
        let layers = |c: &SsdConfig| (c.anchors.clone(), c.n_classes, c.bias.to_bits(), c.drop, c.conv_drop);
        if layers(&new) != layers(cfg) {
            return Err(Error::Invalid(
                "configure_ssd changes the matching, the class loss and pos_iou; anchors, classes and \
                 the head's layers belong to a new model"
                    .into(),
            ));
        }
        self.spec.head = HeadKind::Ssd(new.clone());
        self.net.head.kind = HeadKind::Ssd(new);
        Ok(())
    }

    /// The forward pass of normalised images `x` `[B, 3, sz, sz]` (on the model's device);
    /// group `g` runs in training mode when `train` and `g >= frozen_to`.
    pub fn forward_t(&self, x: &Tensor, train: bool, frozen_to: usize) -> ModelOutput {
        self.net.forward(x, train, frozen_to)
    }

    /// The output for `x` in evaluation mode, without gradients.
    pub fn predict(&self, x: &Tensor) -> ModelOutput {
        tch::no_grad(|| self.net.forward(&x.to_device(self.device()), false, N_GROUPS))
    }

    /// The loss of `out` against a batch's targets: [`Loss::compute`], and for the SSD the
    /// lesson's `ssd_loss` with this model's anchors and config (summed over the images).
    pub fn loss(&self, out: &ModelOutput, y: &BatchTarget) -> Result<Tensor> {
        match (&self.spec.loss, y) {
            (Loss::Ssd {}, BatchTarget::Boxes { bbox, class, n_objects }) => {
                let (cfg, anchors) = self.ssd_parts("the SSD loss")?;
                let o = out.ssd("the SSD loss")?;
                Ok(ssd_loss::ssd_loss(o, bbox, class, Some(n_objects), self.sz() as f64, anchors, cfg)?.total())
            }
            (loss, y) => loss.compute(out, y),
        }
    }

    /// Each image's loss by part ([`Loss::part_names`]; the parts add up to the image's loss).
    pub fn loss_per_image(&self, out: &ModelOutput, y: &BatchTarget) -> Result<Vec<Vec<f64>>> {
        match (&self.spec.loss, y) {
            (Loss::Ssd {}, BatchTarget::Boxes { bbox, class, n_objects }) => {
                let (cfg, anchors) = self.ssd_parts("the SSD loss")?;
                let o = out.ssd("the SSD loss")?;
                ssd_loss::ssd_loss_per_image(o, bbox, class, Some(n_objects), self.sz() as f64, anchors, cfg)?
                    .into_iter()
                    .map(|p| Ok(vec![f64::try_from(&p.loc)?, f64::try_from(&p.class)?]))
                    .collect()
            }
            (loss, y) => loss.per_image(out, y),
        }
    }

    /// An SSD's boxes and class probabilities for every image of `out` (no gradient).
    pub fn decode(&self, out: &ModelOutput) -> Result<Vec<Decoded>> {
        let (_, anchors) = self.ssd_parts("decoding boxes")?;
        Ok(out.ssd("decoding boxes")?.decode(anchors))
    }

    /// The lesson's `show_nmf` post-processing of the first `n` images of an SSD's output: each
    /// image's boxes through [`nms_detections`], in pixels of the `sz x sz` input.
    pub fn detections(&self, out: &ModelOutput, opts: NmfOpts, n: usize) -> Result<Vec<Vec<ScoredBox>>> {
        let (_, anchors) = self.ssd_parts("detections")?;
        detections_of(out.ssd("detections")?, anchors, self.sz(), opts, n)
    }
}

impl AsRef<ModelSpec> for Model {
    fn as_ref(&self) -> &ModelSpec {
        &self.spec
    }
}

impl AsRef<ModelSpec> for ModelSpec {
    fn as_ref(&self) -> &ModelSpec {
        self
    }
}

/// Reading outputs from the description alone (the pictures of a fit's preview or an
/// interpretation, made after the model has moved on): the anchors are built for each call,
/// where [`Model`] keeps its own.
impl ModelSpec {
    /// An SSD's config; `None` for the other models.
    pub fn ssd(&self) -> Option<&SsdConfig> {
        match &self.head {
            HeadKind::Ssd(cfg) => Some(cfg),
            _ => None,
        }
    }

    /// An SSD's config, else an error saying `what` needs an SSD.
    pub fn ssd_config(&self, what: &str) -> Result<&SsdConfig> {
        self.ssd().ok_or_else(|| Error::Invalid(format!("{what} needs an SSD, this model is a {}", self.describe())))
    }

    /// [`Model::decode`].
    pub fn decode(&self, out: &ModelOutput) -> Result<Vec<Decoded>> {
        let cfg = self.ssd_config("decoding boxes")?;
        let o = out.ssd("decoding boxes")?;
        Ok(o.decode(&Anchors::new(&cfg.anchors, o.box_offsets.device())))
    }

    /// [`Model::detections`].
    pub fn detections(&self, out: &ModelOutput, opts: NmfOpts, n: usize) -> Result<Vec<Vec<ScoredBox>>> {
        let cfg = self.ssd_config("detections")?;
        let o = out.ssd("detections")?;
        detections_of(o, &Anchors::new(&cfg.anchors, o.box_offsets.device()), self.sz, opts, n)
    }
}

/// Each of the first `n` images' boxes through the lesson's NMS, in pixels of `sz x sz`.
fn detections_of(o: &SsdOutput, anchors: &Anchors, sz: u32, opts: NmfOpts, n: usize) -> Result<Vec<Vec<ScoredBox>>> {
    let anchors = anchors.to_device(o.box_offsets.device());
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    (0..o.class_logits.size()[0].min(n))
        .map(|i| {
            let (clas, offsets) = o.image(i);
            nms_detections(&crate::anchors::actn_to_bb(&offsets, &anchors), &clas, sz as f32, opts)
        })
        .collect()
}
