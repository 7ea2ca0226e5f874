//! ResNet backbones with torchvision's parameter names, cut before pooling (fastai's `cut_model`).
//!
//! Variable names equal torchvision's `state_dict` keys (`conv1.weight`, `layer1.0.bn1.running_mean`,
//! `layer2.0.downsample.0.weight`, ...), so ImageNet weights load by name. The body is split in
//! fastai's two backbone layer groups: `conv1, bn1, relu, maxpool, layer1, layer2` (group 0) and
//! `layer3, layer4` (group 1); the head is group 2 ([`super::ConvModel`]).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Side of the body's last feature map for `sz x sz` inputs (7 at 224): conv1 and maxpool halve
/// it, then `layer2`-`layer4`.
pub fn feature_side(sz: i64) -> i64 {
    let half = |n: i64| (n - 1) / 2 + 1; // k3/k7 convs and pools with "same" padding, stride 2
    (0..5).fold(sz, |n, _| half(n))
}

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    ResNet18,
    ResNet34,
    ResNet50,
}

impl Arch {
    /// Channels of the last feature map (512, or 2048 for ResNet50).
    pub fn out_channels(self) -> i64 {
        match self {
            Arch::ResNet50 => 2048,
            _ => 512,
        }
    }

    fn blocks(self) -> [i64; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
        }
    }

    /// torchvision's name: `resnet34`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
        }
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, padding: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding, bias: false, ..Default::default() };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

#[derive(Debug)]
struct Downsample {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    /// torchvision `BasicBlock` (2 convs) or `Bottleneck` (3 convs, expansion 4).
    fn new(p: nn::Path, c_in: i64, width: i64, stride: i64, bottleneck: bool) -> Self {
        let c_out = if bottleneck { 4 * width } else { width };
        let convs = if bottleneck {
            vec![
                (conv(&p / "conv1", c_in, width, 1, 0, 1), bn(&p / "bn1", width)),
                (conv(&p / "conv2", width, width, 3, 1, stride), bn(&p / "bn2", width)),
                (conv(&p / "conv3", width, c_out, 1, 0, 1), bn(&p / "bn3", c_out)),
            ]
        } else {
            vec![
                (conv(&p / "conv1", c_in, width, 3, 1, stride), bn(&p / "bn1", width)),
                (conv(&p / "conv2", width, width, 3, 1, 1), bn(&p / "bn2", width)),
            ]
        };
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let d = &p / "downsample";
            Downsample { conv: conv(&d / "0", c_in, c_out, 1, 0, stride), bn: bn(&d / "1", c_out) }
        });
        Self { convs, downsample }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = y.apply(c).apply_t(b, train);
            if i < last {
                y = y.relu();
            }
        }
        let identity = match &self.downsample {
            Some(d) => x.apply(&d.conv).apply_t(&d.bn, train),
            None => x.shallow_clone(),
        };
        (y + identity).relu()
    }
}

/// A ResNet without its average pool and fc: `[B, 3, 224, 224] -> [B, 512, 7, 7]` (ResNet34).
#[derive(Debug)]
pub struct ResNetBody {
    pub arch: Arch,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: [Vec<Block>; 4],
}

impl ResNetBody {
    /// Build under `p` (use the var store's root so names equal torchvision's). Variables of
    /// `conv1, bn1, layer1, layer2` go to optimiser group 0, `layer3, layer4` to group 1.
    pub fn new(p: &nn::Path, arch: Arch) -> Self {
        let bottleneck = arch == Arch::ResNet50;
        let expansion = if bottleneck { 4 } else { 1 };
        let g0 = p.set_group(0);
        let g1 = p.set_group(1);
        let conv1 = conv(&g0 / "conv1", 3, 64, 7, 3, 2);
        let bn1 = bn(&g0 / "bn1", 64);
        let widths = [64, 128, 256, 512];
        let mut c_in = 64;
        let layers: Vec<Vec<Block>> = widths
            .iter()
            .zip(arch.blocks())
            .enumerate()
            .map(|(li, (&width, n))| {
                let path = if li < 2 { &g0 } else { &g1 } / format!("layer{}", li + 1);
                let stride = if li == 0 { 1 } else { 2 };
                (0..n)
                    .map(|bi| {
                        let b = Block::new(
                            &path / bi.to_string(),
                            c_in,
                            width,
                            if bi == 0 { stride } else { 1 },
                            bottleneck,
                        );
                        c_in = width * expansion;
                        b
                    })
                    .collect()
            })
            .collect();
        let layers: [Vec<Block>; 4] = layers.try_into().expect("four layers");
        Self { arch, conv1, bn1, layers }
    }

    /// Forward pass; `train[g]` says whether group `g` (0 or 1) runs in training mode (its
    /// BatchNorm layers use batch statistics and update their running statistics).
    pub fn forward_groups(&self, x: &Tensor, train: [bool; 2]) -> Tensor {
        self.stages(x, train).pop().expect("stages").1
    }

    /// Every stage's name and output, in order (for `summary()`).
    pub fn stages(&self, x: &Tensor, train: [bool; 2]) -> Vec<(&'static str, Tensor)> {
        let mut out = vec![];
        let x = x.apply(&self.conv1);
        out.push(("conv1", x.shallow_clone()));
        let x = x.apply_t(&self.bn1, train[0]).relu();
        out.push(("bn1+relu", x.shallow_clone()));
        let mut x = x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        out.push(("maxpool", x.shallow_clone()));
        for (li, layer) in self.layers.iter().enumerate() {
            let t = train[usize::from(li >= 2)];
            for b in layer {
                x = b.forward_t(&x, t);
            }
            out.push((["layer1", "layer2", "layer3", "layer4"][li], x.shallow_clone()));
        }
        out
    }
}

impl ModuleT for ResNetBody {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_groups(x, [train, train])
    }
}
