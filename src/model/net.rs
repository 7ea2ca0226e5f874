//! The network: a ResNet body and one of the lessons' heads ([`HeadKind`]), in fastai's three
//! layer groups (body up to `layer2`, `layer3`-`layer4`, head). Lesson 8's heads are here, the
//! SSD's in [`super::ssd`]; each head returns its [`ModelOutput`].

use super::output::ModelOutput;
use super::resnet::{feature_side, Arch, ResNetBody};
use super::ssd;
use tch::nn::{self, Init};
use tch::Tensor;

/// The head on top of the body.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum HeadKind {
    /// fastai 0.7's default head: `AdaptiveConcatPool2d -> Flatten -> BN(2C) -> Dropout(ps[0])
    /// -> Linear(2C, 512) -> ReLU -> BN(512) -> Dropout(ps[1]) -> Linear(512, n_out)`;
    /// lesson 8's classifier (`ps = [0.25, 0.5]`).
    Classifier { n_out: i64, ps: [f64; 2] },
    /// Lesson 8's `head_reg4`: `Flatten -> Linear(C*7*7, 4)`.
    Reg4,
    /// Lesson 8's single-object detection head: `Flatten -> ReLU -> Dropout(p) ->
    /// Linear(C*7*7, 256) -> ReLU -> BN1d(256) -> Dropout(p) -> Linear(256, 4 + n_classes)`.
    Detection { n_classes: i64, p: f64 },
    /// Lesson 9's SSD heads (`SSD_Head`, `SSD_MultiHead`): see [`ssd`]. The output is
    /// [`ssd::SsdOutput::pack`]ed: `[B, A, C+1+4]`.
    Ssd(ssd::SsdConfig),
}

impl HeadKind {
    /// The lesson's classifier head for `n_out` classes.
    pub fn classifier(n_out: i64) -> Self {
        HeadKind::Classifier { n_out, ps: [0.25, 0.5] }
    }

    /// The lesson's detection head (dropout 0.5).
    pub fn detection(n_classes: i64) -> Self {
        HeadKind::Detection { n_classes, p: 0.5 }
    }
}

/// fastai's `apply_init(head, kaiming_normal)` for its default head (the classifier): weights
/// Kaiming-normal, biases zero.
fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        bs_init: Some(Init::Const(0.)),
        bias: true,
    };
    nn::linear(p, i, o, cfg)
}

/// PyTorch's default initialisation of a layer with `fan_in` inputs, which the lessons' custom
/// heads keep (fastai initialises only its default head): weights and biases uniform in
/// `+-1/sqrt(fan_in)` (`kaiming_uniform_(a=sqrt(5))` and PyTorch 0.3's `uniform_(-stdv, stdv)`
/// give the same bound). tch's own default is Kaiming-uniform with ReLU's gain, `sqrt(6)` times
/// wider, and zero conv biases.
pub fn pytorch_default_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// A linear layer of a custom head (`head_reg4`, the detection head): PyTorch's default init.
fn linear_default(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let init = pytorch_default_init(i);
    nn::linear(p, i, o, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

#[derive(Debug)]
enum HeadLayers {
    Classifier { bn1: nn::BatchNorm, lin1: nn::Linear, bn2: nn::BatchNorm, lin2: nn::Linear, ps: [f64; 2] },
    Reg4 { lin: nn::Linear },
    Detection { lin1: nn::Linear, bn: nn::BatchNorm, lin2: nn::Linear, p: f64 },
    Ssd(ssd::SsdHeadNet),
}

/// A head (optimiser group 2, variables under `head.`).
#[derive(Debug)]
pub struct Head {
    pub kind: HeadKind,
    layers: HeadLayers,
}

impl Head {
    pub fn new(p: &nn::Path, kind: HeadKind, channels: i64, side: i64) -> Self {
        let flat = channels * side * side;
        let layers = match kind {
            HeadKind::Classifier { n_out, ps } => HeadLayers::Classifier {
                bn1: nn::batch_norm1d(p / "bn1", 2 * channels, Default::default()),
                lin1: linear(p / "lin1", 2 * channels, 512),
                bn2: nn::batch_norm1d(p / "bn2", 512, Default::default()),
                lin2: linear(p / "lin2", 512, n_out),
                ps,
            },
            HeadKind::Reg4 => HeadLayers::Reg4 { lin: linear_default(p / "lin", flat, 4) },
            HeadKind::Detection { n_classes, p: drop } => HeadLayers::Detection {
                lin1: linear_default(p / "lin1", flat, 256),
                bn: nn::batch_norm1d(p / "bn", 256, Default::default()),
                lin2: linear_default(p / "lin2", 256, 4 + n_classes),
                p: drop,
            },
            HeadKind::Ssd(ref cfg) => HeadLayers::Ssd(ssd::SsdHeadNet::new(p, cfg, channels)),
        };
        Self { kind, layers }
    }

    /// Every step's name, output and the prefix of its parameters (for `summary()`); the last
    /// output is the head's.
    pub fn stages(&self, x: &Tensor, train: bool) -> Vec<(&'static str, Tensor, Option<&'static str>)> {
        let mut out = vec![];
        let mut push = |name: &'static str, t: Tensor, params: Option<&'static str>| {
            out.push((name, t.shallow_clone(), params));
            t
        };
        match &self.layers {
            HeadLayers::Classifier { bn1, lin1, bn2, lin2, ps } => {
                // AdaptiveConcatPool2d: [max, avg] as fastai concatenates them.
                let pooled = Tensor::cat(&[x.adaptive_max_pool2d([1, 1]).0, x.adaptive_avg_pool2d([1, 1])], 1);
                let x = push("AdaptiveConcatPool2d", pooled, None); // [B, 2C, 1, 1]
                let x = push("Flatten", x.flatten(1, -1), None); // [B, 2C]
                let x = push("BatchNorm1d", x.apply_t(bn1, train), Some("head.bn1."));
                let x = push("Dropout", x.dropout(ps[0], train), None);
                let x = push("Linear", x.apply(lin1), Some("head.lin1."));
                let x = push("ReLU", x.relu(), None);
                let x = push("BatchNorm1d", x.apply_t(bn2, train), Some("head.bn2."));
                let x = push("Dropout", x.dropout(ps[1], train), None);
                let _ = push("Linear", x.apply(lin2), Some("head.lin2."));
            }
            HeadLayers::Reg4 { lin } => {
                let x = push("Flatten", x.flatten(1, -1), None); // [B, C*7*7]
                let _ = push("Linear", x.apply(lin), Some("head.lin."));
            }
            HeadLayers::Detection { lin1, bn, lin2, p } => {
                let x = push("Flatten", x.flatten(1, -1), None); // [B, C*7*7]
                let x = push("ReLU", x.relu(), None);
                let x = push("Dropout", x.dropout(*p, train), None);
                let x = push("Linear", x.apply(lin1), Some("head.lin1."));
                let x = push("ReLU", x.relu(), None);
                let x = push("BatchNorm1d", x.apply_t(bn, train), Some("head.bn."));
                let x = push("Dropout", x.dropout(*p, train), None);
                let _ = push("Linear", x.apply(lin2), Some("head.lin2.")); // [B, 4 + C]
            }
            HeadLayers::Ssd(net) => out.extend(net.stages(x, train)), // last: [B, A, C+1+4]
        }
        out
    }

    /// The head's output for the body's features `x`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> ModelOutput {
        match &self.layers {
            // The SSD's forward without the summary's bookkeeping (one `cat` per grid).
            HeadLayers::Ssd(net) => ModelOutput::Ssd(net.forward_t(x, train)),
            _ => {
                let out = self.stages(x, train).pop().expect("head stages").1;
                match &self.layers {
                    HeadLayers::Reg4 { .. } => ModelOutput::Box(out),
                    HeadLayers::Detection { .. } => {
                        // One Linear(256, 4 + C): the box's 4 activations, then the class logits.
                        let c = out.size()[1] - 4;
                        ModelOutput::Single { bbox: out.narrow(1, 0, 4), class: out.narrow(1, 4, c) }
                    }
                    _ => ModelOutput::Logits(out),
                }
            }
        }
    }
}

/// Body + head, with fastai's three layer groups.
#[derive(Debug)]
pub struct ConvModel {
    pub body: ResNetBody,
    pub head: Head,
    pub sz: i64,
}

/// Number of layer groups (two in the body, one head).
pub const N_GROUPS: usize = 3;

/// The layer group of a variable, from its name.
pub fn group_of(name: &str) -> usize {
    if name.starts_with("head.") {
        2
    } else if name.starts_with("layer3.") || name.starts_with("layer4.") {
        1
    } else {
        0
    }
}

impl ConvModel {
    /// A model for `sz x sz` inputs, built in `vs` (body at the root, head under `head`).
    pub fn new(vs: &nn::VarStore, arch: Arch, head: HeadKind, sz: i64) -> Self {
        let root = vs.root();
        let body = ResNetBody::new(&root, arch);
        let head = Head::new(&(root.set_group(2) / "head"), head, arch.out_channels(), feature_side(sz));
        Self { body, head, sz }
    }

    /// Forward pass; group `g` runs in training mode when `train` and `g >= frozen_to` (frozen
    /// groups keep their BatchNorm statistics, as fastai's `freeze_to`).
    pub fn forward(&self, x: &Tensor, train: bool, frozen_to: usize) -> ModelOutput {
        let t = |g: usize| train && g >= frozen_to;
        let features = self.body.forward_groups(x, [t(0), t(1)]);
        self.head.forward_t(&features, t(2))
    }
}
