//! Models: a ResNet body (torchvision names) and the lesson's heads, in fastai's three layer
//! groups (body up to `layer2`, `layer3`-`layer4`, head); loading ImageNet weights.
//!
//! - [`resnet`]: the body, with torchvision's variable names;
//! - [`ssd`]: lesson 9's SSD heads and their config;
//! - here: lesson 8's heads ([`HeadKind`]), the model ([`ConvModel`]) and its layer groups.

pub mod resnet;
pub mod ssd;

pub use resnet::{feature_side, Arch, ResNetBody};

use crate::error::{Error, Result};
use std::path::Path;
use tch::nn::{self, Init, ModuleT};
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

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.layers {
            // The SSD's forward without the summary's bookkeeping (one `cat` per grid).
            HeadLayers::Ssd(net) => net.forward_t(x, train).pack(), // [B, A, C+1+4]
            _ => self.stages(x, train).pop().expect("head stages").1,
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
    pub fn forward(&self, x: &Tensor, train: bool, frozen_to: usize) -> Tensor {
        let t = |g: usize| train && g >= frozen_to;
        let features = self.body.forward_groups(x, [t(0), t(1)]);
        self.head.forward_t(&features, t(2))
    }
}

impl ModuleT for ConvModel {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward(x, train, 0)
    }
}

/// Read a state dict: `.safetensors`, or a `.pth`/`.pt` file that libtorch's C++ loader reads
/// (`torch.save(dict(model.state_dict()))`). torchvision's downloads are pickled `OrderedDict`s,
/// which it cannot read: convert them once with `scripts/convert_weights.py` (the error says so).
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        return Err(Error::Io {
            path: path.into(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let read = if ext == "safetensors" { Tensor::read_safetensors(path) } else { Tensor::loadz_multi(path) };
    read.map_err(|e| {
        Error::checkpoint(
            path,
            format!(
                "cannot read weights ({e}); convert them with `python scripts/convert_weights.py {} out.safetensors`",
                path.display()
            ),
        )
    })
}

/// Where ImageNet weights for `arch` are, if a user put them in place: `$FASTDET_WEIGHTS` (a
/// file, or a folder to look in), else this crate's `models/` folder; in a folder the names
/// tried are `<arch>.safetensors`, `<arch>.pth` and torchvision's `<arch>-<hash>.pth`.
pub fn find_weights(arch: Arch) -> Option<std::path::PathBuf> {
    let name = arch.name();
    let dirs: Vec<std::path::PathBuf> = match std::env::var_os("FASTDET_WEIGHTS").filter(|v| !v.is_empty()) {
        Some(p) if Path::new(&p).is_file() => return Some(p.into()),
        Some(p) => vec![p.into()],
        None => vec![crate::util::crate_root().join("models")],
    };
    for dir in dirs {
        for f in [format!("{name}.safetensors"), format!("{name}.pth")] {
            if dir.join(&f).is_file() {
                return Some(dir.join(f));
            }
        }
        let mut hashed: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}-")) && n.ends_with(".pth"))
            })
            .collect();
        hashed.sort();
        if let Some(p) = hashed.pop() {
            return Some(p);
        }
    }
    None
}

/// Load a torchvision ResNet `state_dict` into the body variables of `vs` (names as
/// torchvision's; `fc.*` and `num_batches_tracked` are ignored). Every body variable must be
/// found with the right shape: a partial load is an error listing what is missing.
pub fn load_backbone(vs: &mut nn::VarStore, path: &Path) -> Result<usize> {
    let file: std::collections::HashMap<String, Tensor> = read_state_dict(path)?.into_iter().collect();
    let mut missing = vec![];
    let mut loaded = 0;
    let vars = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            if group_of(&name) == 2 {
                continue;
            }
            match file.get(&name) {
                Some(src) if src.size() == var.size() => {
                    var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
                    loaded += 1;
                }
                Some(src) => {
                    return Err(Error::checkpoint(
                        path,
                        format!(
                            "{name} has shape {:?}, the model expects {:?} (another architecture?)",
                            src.size(),
                            var.size()
                        ),
                    ))
                }
                None => missing.push(name),
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        missing.sort();
        return Err(Error::checkpoint(
            path,
            format!(
                "{} backbone weights missing, e.g. {}",
                missing.len(),
                missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(loaded)
}

/// Copy every variable of `vs` from the tensors of a checkpoint (`path` names it in errors),
/// converting their float kind (fastdet ships weights in fp16; libtorch's `VarStore::load` would
/// leave the variables in the file's kind). Strict: a variable missing from the file, or of
/// another shape, is an error naming the file.
pub fn copy_all_converting(
    vs: &mut nn::VarStore,
    file: &std::collections::HashMap<String, Tensor>,
    path: &Path,
) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            let src = file
                .get(&name)
                .ok_or_else(|| Error::checkpoint(path, format!("{name} is missing (weights of another model?)")))?;
            if src.size() != var.size() {
                return Err(Error::checkpoint(
                    path,
                    format!("{name} has shape {:?}, the model expects {:?}", src.size(), var.size()),
                ));
            }
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
        Ok(())
    })
}

/// Parameter count of the variables whose names start with `prefix`.
pub fn count_params(vs: &nn::VarStore, prefix: &str) -> i64 {
    vs.variables()
        .iter()
        .filter(|(n, _)| n.starts_with(prefix) && !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}
