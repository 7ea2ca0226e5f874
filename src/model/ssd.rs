//! Lesson 9's SSD as a model (`pascal-multi.ipynb`): its config ([`SsdConfig`]: anchors, head
//! and the loss settings [`Matching`] and [`ClassLoss`]) and its heads (`StdConv`, `OutConv`,
//! `SSD_Head`, `SSD_MultiHead`), whose output [`SsdOutput`] lists the anchors in the order of
//! [`crate::anchors::Anchors`]. The matching and the loss are in [`crate::model::ssd_loss`]; decoding
//! boxes ([`crate::anchors::actn_to_bb`]) is with the anchors; [`crate::ssd`] maps every lesson
//! name to its place.

use super::resnet::feature_side;
use crate::anchors::{actn_to_bb, AnchorConfig, Anchors, Decoded};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Channels of every convolution inside the SSD heads (the lesson's 256).
pub const HEAD_CHANNELS: i64 = 256;

// ---------------------------------------------------------------------------------------------
// Config

/// How anchors are matched to ground-truth boxes ([`crate::model::ssd_loss::map_to_ground_truth`]);
/// the lesson's rule is the default, so the notebooks' numbers are the lesson's (`"lesson"` or
/// `"no_gt_lost"` in a `fastdet train` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// The lesson's: each anchor takes the ground truth it overlaps most; then each ground
    /// truth's best anchor is forced to it (overlap [`FORCED_OVERLAP`](crate::model::ssd_loss::FORCED_OVERLAP)), in ground-truth order, so when two
    /// ground truths share a best anchor the later one wins and the earlier one may get no
    /// anchor at all ([`crate::model::ssd_loss::lost_objects`] finds them).
    #[default]
    Lesson,
    /// As the lesson, but the forcing goes through the ground truths in order of decreasing best
    /// IoU (ties: lower index first) and gives each the anchor it overlaps most **among those not
    /// already forced**: no ground truth is lost while there are anchors left. When there are
    /// more ground truths than anchors, the ones left over keep only the anchors that prefer
    /// them. Identical to `Lesson` when all best anchors differ.
    NoGtLost,
}

/// The classification loss of [`crate::model::ssd_loss::ssd_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum ClassLoss {
    /// Lesson 9's `BCE_Loss`: one-hot over `C + 1`, background column dropped, summed BCE / C.
    #[default]
    Bce,
    /// Lesson 9's `FocalLoss`: BCE weighted by `w * (1 - pt)^gamma`, `w = alpha*t +
    /// (1-alpha)*(1-t)`, `pt = p*t + (1-p)*(1-t)`, `p = sigmoid(x)`; the weight is not detached.
    Focal { alpha: f64, gamma: f64 },
}

impl ClassLoss {
    /// The notebook's focal loss: `alpha = 0.25`, `gamma = 1` (the video and RetinaNet use 2).
    pub fn focal() -> Self {
        ClassLoss::Focal { alpha: 0.25, gamma: 1.0 }
    }
}

/// Everything that defines an SSD: anchors, head and loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsdConfig {
    pub anchors: AnchorConfig,
    /// Object classes `C` (20 for VOC); the head predicts `C + 1`, the last being background.
    pub n_classes: i64,
    /// Initial bias of the class convolutions (-3 for the 4x4 head, -4 for the multi-head), so
    /// every anchor starts near "nothing here".
    pub bias: f64,
    /// Dropout on the ReLU of the body's features, before the first `StdConv` (0.25, 0.4).
    pub drop: f64,
    /// Dropout inside each `StdConv` (0.1 = `StdConv`'s default in the 4x4 head, 0.4 in the
    /// multi-head).
    pub conv_drop: f64,
    pub matching: Matching,
    pub class_loss: ClassLoss,
    /// Anchors whose matched overlap exceeds this are positives (0.4).
    pub pos_iou: f64,
}

impl SsdConfig {
    /// The first SSD of lesson 9: `SSD_Head(k=1, -3.)` on a 4x4 grid, BCE loss.
    pub fn lesson_4x4(n_classes: i64) -> Self {
        Self {
            anchors: AnchorConfig::lesson_4x4(),
            n_classes,
            bias: -3.0,
            drop: 0.25,
            conv_drop: 0.1,
            matching: Matching::default(),
            class_loss: ClassLoss::Bce,
            pos_iou: 0.4,
        }
    }

    /// The final SSD of lesson 9: `SSD_MultiHead(k=9, -4.)`, `drop = 0.4`, 189 anchors, BCE loss
    /// (chain [`SsdConfig::with_class_loss`]`(ClassLoss::focal())` for the focal version).
    pub fn lesson_189(n_classes: i64) -> Self {
        Self {
            anchors: AnchorConfig::lesson_189(),
            n_classes,
            bias: -4.0,
            drop: 0.4,
            conv_drop: 0.4,
            matching: Matching::default(),
            class_loss: ClassLoss::Bce,
            pos_iou: 0.4,
        }
    }

    pub fn with_class_loss(mut self, class_loss: ClassLoss) -> Self {
        self.class_loss = class_loss;
        self
    }

    pub fn with_matching(mut self, matching: Matching) -> Self {
        self.matching = matching;
        self
    }

    /// Anchor shapes per cell.
    pub fn k(&self) -> i64 {
        self.anchors.k() as i64
    }

    /// The grids the head produces from a `side x side` feature map: a stride-1 `StdConv`, then
    /// one stride-2 `StdConv` per anchor grid (7 -> 4 -> 2 -> 1 at 224).
    pub fn head_grids(&self, side: i64) -> Vec<usize> {
        let mut s = side;
        (0..self.anchors.grids.len())
            .map(|_| {
                s = (s - 1) / 2 + 1;
                s as usize
            })
            .collect()
    }

    /// The config with its anchor grids set to the grids the head makes at input size `sz`
    /// (`[4, 2, 1]` at 224, `[2, 1, 1]` at 128).
    pub fn fitted_to(mut self, sz: u32) -> Self {
        self.anchors.grids = self.head_grids(feature_side(sz as i64));
        self
    }

    /// Whether the head's grids at input size `sz` are the anchor grids (they are for the
    /// lesson's configs at 224).
    pub fn check(&self, sz: i64) -> Result<()> {
        let side = feature_side(sz);
        let grids = self.head_grids(side);
        if grids != self.anchors.grids {
            return Err(Error::Invalid(format!(
                "at sz {sz} the SSD head makes grids {grids:?} (from {side}x{side} features) but the anchors are for grids {:?}",
                self.anchors.grids
            )));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Heads

/// Lesson 9's `StdConv(nin, nout, stride=2, drop=0.1)`: `Dropout(BN(ReLU(Conv3x3(pad 1))))`;
/// variables `conv.*`, `bn.*`.
#[derive(Debug)]
pub struct StdConv {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    drop: f64,
}

/// A 3x3 convolution with PyTorch's default initialisation (the lesson's custom heads keep it):
/// weights and biases uniform in `+-1/sqrt(fan_in)`, `fan_in = nin * 9`
/// ([`super::pytorch_default_init`]); `bias` replaces the bias's by a constant (`OutConv`'s
/// `oconv1.bias.data.zero_().add_(bias)`).
fn conv3x3(p: nn::Path, nin: i64, nout: i64, stride: i64, bias: Option<f64>) -> nn::Conv2D {
    let init = super::pytorch_default_init(nin * 9);
    let bs_init = bias.map_or(init, Init::Const);
    nn::conv2d(p, nin, nout, 3, nn::ConvConfig { stride, padding: 1, ws_init: init, bs_init, ..Default::default() })
}

impl StdConv {
    pub fn new(p: nn::Path, nin: i64, nout: i64, stride: i64, drop: f64) -> Self {
        Self {
            conv: conv3x3(&p / "conv", nin, nout, stride, None),
            bn: nn::batch_norm2d(&p / "bn", nout, Default::default()),
            drop,
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).relu().apply_t(&self.bn, train).dropout(self.drop, train)
    }
}

/// Lesson 9's `flatten_conv(x, k)`: `[B, C, H, W] -> [B, H*W*k, C/k]`, cell-major (row, then
/// column), then the `k` anchors of a cell: the order of [`crate::anchors::Anchors`].
pub fn flatten_conv(x: &Tensor, k: i64) -> Tensor {
    let (bs, nf) = (x.size()[0], x.size()[1]);
    x.permute([0, 2, 3, 1]) // [B, H, W, C]
        .contiguous()
        .view([bs, -1, nf / k]) // [B, H*W*k, C/k]
}

/// Lesson 9's `OutConv(k, nin, bias)`: two 3x3 convolutions, `oconv1` with `(C+1)*k` class
/// channels (bias starting at `bias`) and `oconv2` with `4*k` box channels.
#[derive(Debug)]
pub struct OutConv {
    k: i64,
    oconv1: nn::Conv2D,
    oconv2: nn::Conv2D,
}

impl OutConv {
    pub fn new(p: nn::Path, k: i64, nin: i64, n_classes: i64, bias: f64) -> Self {
        Self {
            k,
            oconv1: conv3x3(&p / "oconv1", nin, (n_classes + 1) * k, 1, Some(bias)),
            oconv2: conv3x3(&p / "oconv2", nin, 4 * k, 1, None),
        }
    }

    /// `(class logits [B, H*W*k, C+1], box activations [B, H*W*k, 4])`.
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        (flatten_conv(&x.apply(&self.oconv1), self.k), flatten_conv(&x.apply(&self.oconv2), self.k))
    }
}

/// The head's outputs for a batch, in anchor order.
#[derive(Debug)]
pub struct SsdOutput {
    /// `[B, A, C+1]`, background last.
    pub class_logits: Tensor,
    /// `[B, A, 4]` activations, turned into boxes by [`crate::anchors::actn_to_bb`].
    pub box_offsets: Tensor,
}

impl SsdOutput {
    /// One tensor `[B, A, C+1+4]`, class logits first (what [`crate::model::ConvModel::forward`]
    /// returns for an SSD head).
    pub fn pack(&self) -> Tensor {
        Tensor::cat(&[&self.class_logits, &self.box_offsets], 2) // [B, A, C+1+4]
    }

    /// Back from [`SsdOutput::pack`]'s `[B, A, C+1+4]` (views, no copy).
    pub fn unpack(packed: &Tensor, n_classes: i64) -> Result<Self> {
        let size = packed.size();
        if size.len() != 3 || size[2] != n_classes + 5 {
            return Err(Error::Shape {
                what: format!("an SSD output for {n_classes} classes"),
                expected: format!("[B, A, {}]", n_classes + 5),
                found: size,
            });
        }
        Ok(Self { class_logits: packed.narrow(2, 0, n_classes + 1), box_offsets: packed.narrow(2, n_classes + 1, 4) })
    }

    /// A view sharing the tensors.
    pub fn shallow_clone(&self) -> Self {
        Self { class_logits: self.class_logits.shallow_clone(), box_offsets: self.box_offsets.shallow_clone() }
    }

    /// Image `i`'s `(class logits [A, C+1], box activations [A, 4])`.
    pub fn image(&self, i: i64) -> (Tensor, Tensor) {
        (self.class_logits.get(i), self.box_offsets.get(i))
    }

    /// Every image's boxes and class probabilities (no gradient), for plotting and NMS.
    pub fn decode(&self, anchors: &Anchors) -> Vec<Decoded> {
        tch::no_grad(|| {
            let anchors = anchors.to_device(self.box_offsets.device());
            (0..self.class_logits.size()[0])
                .map(|i| {
                    let (c, b) = self.image(i);
                    Decoded {
                        boxes: actn_to_bb(&b.to_kind(Kind::Float), &anchors),
                        probs: c.to_kind(Kind::Float).sigmoid(),
                    }
                })
                .collect()
        })
    }
}

type Stages = Vec<(&'static str, Tensor, Option<&'static str>)>;

/// Lesson 9's `SSD_Head(k, bias)`: `Dropout(drop)(ReLU(x)) -> sconv0 = StdConv(nin, 256,
/// stride 1) -> sconv2 = StdConv(256, 256)` (7x7 -> 4x4) `-> out = OutConv(k, 256, bias)`.
/// (The lesson names the second conv `sconv2`, having commented out `sconv1`.)
#[derive(Debug)]
pub struct SsdHead {
    drop: f64,
    sconv0: StdConv,
    sconv2: StdConv,
    out: OutConv,
}

impl SsdHead {
    pub fn new(p: &nn::Path, cfg: &SsdConfig, nin: i64) -> Self {
        Self {
            drop: cfg.drop,
            sconv0: StdConv::new(p / "sconv0", nin, HEAD_CHANNELS, 1, cfg.conv_drop),
            sconv2: StdConv::new(p / "sconv2", HEAD_CHANNELS, HEAD_CHANNELS, 2, cfg.conv_drop),
            out: OutConv::new(p / "out", cfg.k(), HEAD_CHANNELS, cfg.n_classes, cfg.bias),
        }
    }

    /// Named steps for `summary()`; the last three are class logits, box activations, packed.
    pub fn stages(&self, x: &Tensor, train: bool) -> Stages {
        let mut out: Stages = vec![];
        let o = self.run(x, train, Some(&mut out));
        finish_stages(
            out,
            o,
            ("OutConv (classes)", Some("head.out.oconv1.")),
            ("OutConv (boxes)", Some("head.out.oconv2.")),
        )
    }

    /// The forward pass; `rec` collects the named steps for `summary()` (none while training).
    fn run(&self, x: &Tensor, train: bool, mut rec: Option<&mut Stages>) -> SsdOutput {
        let mut push = |name, t: &Tensor, params| {
            if let Some(r) = rec.as_deref_mut() {
                r.push((name, t.shallow_clone(), params));
            }
        };
        let x = x.relu().dropout(self.drop, train);
        push("ReLU+Dropout", &x, None);
        let x = self.sconv0.forward_t(&x, train); // [B, 256, 7, 7]
        push("StdConv", &x, Some("head.sconv0."));
        let x = self.sconv2.forward_t(&x, train); // [B, 256, 4, 4]
        push("StdConv", &x, Some("head.sconv2."));
        let (c, b) = self.out.forward(&x); // [B, 16k, C+1], [B, 16k, 4]
        SsdOutput { class_logits: c, box_offsets: b }
    }
}

/// The last three `summary()` steps of a head: class logits, box activations, packed.
fn finish_stages(
    mut out: Stages,
    o: SsdOutput,
    classes: (&'static str, Option<&'static str>),
    boxes: (&'static str, Option<&'static str>),
) -> Stages {
    let packed = o.pack();
    out.push((classes.0, o.class_logits, classes.1));
    out.push((boxes.0, o.box_offsets, boxes.1));
    out.push(("SsdOutput (packed)", packed, None));
    out
}

const SCONV: [&str; 8] = [
    "head.sconv0.",
    "head.sconv1.",
    "head.sconv2.",
    "head.sconv3.",
    "head.sconv4.",
    "head.sconv5.",
    "head.sconv6.",
    "head.sconv7.",
];
const OUT: [&str; 8] =
    ["head.out0.", "head.out1.", "head.out2.", "head.out3.", "head.out4.", "head.out5.", "head.out6.", "head.out7."];

/// Lesson 9's `SSD_MultiHead(k, bias)` with `drop`: `Dropout(drop)(ReLU(x)) -> sconv0 =
/// StdConv(nin, 256, stride 1)`, then per grid `i = 1, 2, 3`: `sconv{i} = StdConv(256, 256)`
/// (7 -> 4 -> 2 -> 1) followed by `out{i} = OutConv(k, 256, bias)`; outputs concatenated along
/// the anchors, 4x4 first. All `StdConv`s use `drop`. (The lesson also builds an `out0` that its
/// forward never uses; it is left out here, so no parameter goes without a gradient.)
#[derive(Debug)]
pub struct SsdMultiHead {
    drop: f64,
    sconv0: StdConv,
    /// `sconv1..`, one per grid.
    sconvs: Vec<StdConv>,
    /// `out1..`, one per grid.
    outs: Vec<OutConv>,
}

impl SsdMultiHead {
    pub fn new(p: &nn::Path, cfg: &SsdConfig, nin: i64) -> Self {
        let n = cfg.anchors.grids.len();
        Self {
            drop: cfg.drop,
            sconv0: StdConv::new(p / "sconv0", nin, HEAD_CHANNELS, 1, cfg.conv_drop),
            sconvs: (1..=n)
                .map(|i| StdConv::new(p / format!("sconv{i}"), HEAD_CHANNELS, HEAD_CHANNELS, 2, cfg.conv_drop))
                .collect(),
            outs: (1..=n)
                .map(|i| OutConv::new(p / format!("out{i}"), cfg.k(), HEAD_CHANNELS, cfg.n_classes, cfg.bias))
                .collect(),
        }
    }

    /// Named steps for `summary()`; the last three are class logits, box activations, packed.
    pub fn stages(&self, x: &Tensor, train: bool) -> Stages {
        let mut out: Stages = vec![];
        let o = self.run(x, train, Some(&mut out));
        finish_stages(out, o, ("cat (classes)", None), ("cat (boxes)", None))
    }

    /// The forward pass; `rec` collects the named steps for `summary()` (none while training,
    /// so a training step makes no extra `cat` per grid).
    fn run(&self, x: &Tensor, train: bool, mut rec: Option<&mut Stages>) -> SsdOutput {
        let x = x.relu().dropout(self.drop, train);
        if let Some(r) = rec.as_deref_mut() {
            r.push(("ReLU+Dropout", x.shallow_clone(), None));
        }
        let mut x = self.sconv0.forward_t(&x, train); // [B, 256, 7, 7]
        if let Some(r) = rec.as_deref_mut() {
            r.push(("StdConv", x.shallow_clone(), Some(SCONV[0])));
        }
        let (mut cs, mut bs) = (vec![], vec![]);
        for (i, (sconv, oconv)) in self.sconvs.iter().zip(&self.outs).enumerate() {
            x = sconv.forward_t(&x, train); // [B, 256, g, g], g = 4, 2, 1
            let (c, b) = oconv.forward(&x); // [B, g*g*k, C+1], [B, g*g*k, 4]
            if let Some(r) = rec.as_deref_mut() {
                r.push(("StdConv", x.shallow_clone(), SCONV.get(i + 1).copied()));
                r.push(("OutConv", Tensor::cat(&[&c, &b], 2), OUT.get(i + 1).copied()));
            }
            cs.push(c);
            bs.push(b);
        }
        SsdOutput { class_logits: Tensor::cat(&cs, 1), box_offsets: Tensor::cat(&bs, 1) }
        // [B, A, C+1], [B, A, 4]
    }
}

/// The SSD head a config asks for: [`SsdHead`] for one grid, [`SsdMultiHead`] for several.
#[derive(Debug)]
pub enum SsdHeadNet {
    Single(Box<SsdHead>),
    Multi(Box<SsdMultiHead>),
}

impl SsdHeadNet {
    /// Variables under `p` (the model puts them under `head.`); `nin` = the body's channels.
    pub fn new(p: &nn::Path, cfg: &SsdConfig, nin: i64) -> Self {
        if cfg.anchors.grids.len() == 1 {
            SsdHeadNet::Single(Box::new(SsdHead::new(p, cfg, nin)))
        } else {
            SsdHeadNet::Multi(Box::new(SsdMultiHead::new(p, cfg, nin)))
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> SsdOutput {
        match self {
            SsdHeadNet::Single(h) => h.run(x, train, None),
            SsdHeadNet::Multi(h) => h.run(x, train, None),
        }
    }

    /// Named steps (for `summary()`); the last is the packed output `[B, A, C+1+4]`.
    pub fn stages(&self, x: &Tensor, train: bool) -> Stages {
        match self {
            SsdHeadNet::Single(h) => h.stages(x, train),
            SsdHeadNet::Multi(h) => h.stages(x, train),
        }
    }
}
