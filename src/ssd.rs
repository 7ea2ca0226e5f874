//! Lesson 9's single-shot detector (`pascal-multi.ipynb`): the heads, matching anchors to
//! ground truth, the SSD loss with BCE or focal classification, and decoding for display.
//!
//! Conventions: boxes inside the loss are corners `(y1, x1, y2, x2)` in 0..1 units of the image
//! (the batch's pixel boxes divided by `sz`, as the lesson's `get_y`); anchors are
//! [`crate::anchors::Anchors`], in the order `flatten_conv` lays out the head's activations.
//!
//! | lesson                         | here                                   |
//! |--------------------------------|----------------------------------------|
//! | `StdConv`, `OutConv`           | [`StdConv`], [`OutConv`]               |
//! | `flatten_conv`                 | [`flatten_conv`]                       |
//! | `SSD_Head(k, -3.)`             | [`SsdHead`]                            |
//! | `SSD_MultiHead(k, -4.)`        | [`SsdMultiHead`]                       |
//! | `[class_logits, box_actns]`    | [`SsdOutput`] (packed for the learner) |
//! | `jaccard`                      | [`iou`]                                |
//! | `actn_to_bb`, `hw2corners`     | [`actn_to_bb`], [`hw2corners`]         |
//! | `map_to_ground_truth`          | [`map_to_ground_truth`] + [`Matching`] |
//! | `get_y`                        | [`get_y`] (or the batch's `n_objects`) |
//! | `BCE_Loss`, `FocalLoss`        | [`class_loss`] + [`ClassLoss`]         |
//! | `ssd_1_loss`, `ssd_loss`       | [`ssd_1_loss`], [`ssd_loss`] -> [`LossParts`] |
//! | `plot_results`                 | [`decode`], [`show_results`]           |
//!
//! One deliberate change: the lesson's `map_to_ground_truth` loses a ground truth when two of
//! them have the same best anchor (the later one takes it). [`Matching::NoGtLost`], the default,
//! gives each ground truth its own anchor; [`Matching::Lesson`] reproduces the original.

use crate::anchors::{corners_to_bboxes, AnchorConfig, Anchors};
use crate::boxes::BBox;
use crate::draw::Figure;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

pub use crate::anchors::hw2corners;

// ---------------------------------------------------------------------------------------------
// Config

/// How anchors are matched to ground-truth boxes ([`map_to_ground_truth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Matching {
    /// The lesson's: each anchor takes the ground truth it overlaps most; then each ground
    /// truth's best anchor is forced to it (overlap 1.99), in ground-truth order, so when two
    /// ground truths share a best anchor the later one wins and the earlier one may get no
    /// anchor at all.
    Lesson,
    /// As the lesson, but the forcing goes through the ground truths in order of decreasing best
    /// IoU (ties: lower index first) and gives each the anchor it overlaps most **among those not
    /// already forced**: no ground truth is lost while there are anchors left. When there are
    /// more ground truths than anchors, the ones left over keep only the anchors that prefer
    /// them. Identical to `Lesson` when all best anchors differ.
    #[default]
    NoGtLost,
}

/// The classification loss of [`ssd_loss`].
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

    /// Whether the head's grids at input size `sz` are the anchor grids (they are for the
    /// lesson's configs at 224).
    pub fn check(&self, sz: i64) -> Result<()> {
        let side = crate::model::feature_side(sz);
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

/// PyTorch's default conv initialisation (the lesson's custom heads keep it): Kaiming-uniform
/// weights, biases uniform in `+-1/sqrt(fan_in)`; `bias` replaces the latter by a constant.
fn conv3x3(p: nn::Path, nin: i64, nout: i64, stride: i64, bias: Option<f64>) -> nn::Conv2D {
    let bound = 1.0 / ((nin * 9) as f64).sqrt();
    let bs_init = match bias {
        Some(b) => Init::Const(b),
        None => Init::Uniform { lo: -bound, up: bound },
    };
    nn::conv2d(p, nin, nout, 3, nn::ConvConfig { stride, padding: 1, bs_init, ..Default::default() })
}

impl StdConv {
    pub fn new(p: nn::Path, nin: i64, nout: i64, stride: i64, drop: f64) -> Self {
        Self { conv: conv3x3(&p / "conv", nin, nout, stride, None), bn: nn::batch_norm2d(&p / "bn", nout, Default::default()), drop }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).relu().apply_t(&self.bn, train).dropout(self.drop, train)
    }
}

/// Lesson 9's `flatten_conv(x, k)`: `[B, C, H, W] -> [B, H*W*k, C/k]`, cell-major (row, then
/// column), then the `k` anchors of a cell: the order of [`Anchors`].
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
    /// `[B, A, 4]` activations, turned into boxes by [`actn_to_bb`].
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
            return Err(Error::Invalid(format!(
                "an SSD output for {n_classes} classes is [B, A, {}], found {size:?}",
                n_classes + 5
            )));
        }
        Ok(Self { class_logits: packed.narrow(2, 0, n_classes + 1), box_offsets: packed.narrow(2, n_classes + 1, 4) })
    }

    /// Image `i`'s `(class logits [A, C+1], box activations [A, 4])`.
    pub fn image(&self, i: i64) -> (Tensor, Tensor) {
        (self.class_logits.get(i), self.box_offsets.get(i))
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

/// The class logits and box activations among a head's `stages` (the last three are class
/// logits, box activations, packed).
fn output_of(mut s: Stages) -> SsdOutput {
    let (c, b) = (s.remove(s.len() - 3).1, s.remove(s.len() - 2).1);
    SsdOutput { class_logits: c, box_offsets: b }
}

impl SsdHead {
    pub fn new(p: &nn::Path, cfg: &SsdConfig, nin: i64) -> Self {
        Self {
            drop: cfg.drop,
            sconv0: StdConv::new(p / "sconv0", nin, 256, 1, cfg.conv_drop),
            sconv2: StdConv::new(p / "sconv2", 256, 256, 2, cfg.conv_drop),
            out: OutConv::new(p / "out", cfg.k(), 256, cfg.n_classes, cfg.bias),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> SsdOutput {
        output_of(self.stages(x, train))
    }

    /// Named steps for `summary()`; the last three are class logits, box activations, packed.
    pub fn stages(&self, x: &Tensor, train: bool) -> Stages {
        let mut out: Stages = vec![];
        let x = x.relu().dropout(self.drop, train);
        out.push(("ReLU+Dropout", x.shallow_clone(), None));
        let x = self.sconv0.forward_t(&x, train); // [B, 256, 7, 7]
        out.push(("StdConv", x.shallow_clone(), Some("head.sconv0.")));
        let x = self.sconv2.forward_t(&x, train); // [B, 256, 4, 4]
        out.push(("StdConv", x.shallow_clone(), Some("head.sconv2.")));
        let (c, b) = self.out.forward(&x); // [B, 16k, C+1], [B, 16k, 4]
        let packed = Tensor::cat(&[&c, &b], 2);
        out.push(("OutConv (classes)", c, Some("head.out.oconv1.")));
        out.push(("OutConv (boxes)", b, Some("head.out.oconv2.")));
        out.push(("SsdOutput (packed)", packed, None));
        out
    }
}

const SCONV: [&str; 8] = ["head.sconv0.", "head.sconv1.", "head.sconv2.", "head.sconv3.", "head.sconv4.", "head.sconv5.", "head.sconv6.", "head.sconv7."];
const OUT: [&str; 8] = ["head.out0.", "head.out1.", "head.out2.", "head.out3.", "head.out4.", "head.out5.", "head.out6.", "head.out7."];

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
            sconv0: StdConv::new(p / "sconv0", nin, 256, 1, cfg.conv_drop),
            sconvs: (1..=n).map(|i| StdConv::new(p / format!("sconv{i}"), 256, 256, 2, cfg.conv_drop)).collect(),
            outs: (1..=n).map(|i| OutConv::new(p / format!("out{i}"), cfg.k(), 256, cfg.n_classes, cfg.bias)).collect(),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> SsdOutput {
        output_of(self.stages(x, train))
    }

    /// Named steps for `summary()`; the last three are class logits, box activations, packed.
    pub fn stages(&self, x: &Tensor, train: bool) -> Stages {
        let mut out: Stages = vec![];
        let x = x.relu().dropout(self.drop, train);
        out.push(("ReLU+Dropout", x.shallow_clone(), None));
        let mut x = self.sconv0.forward_t(&x, train); // [B, 256, 7, 7]
        out.push(("StdConv", x.shallow_clone(), Some(SCONV[0])));
        let (mut cs, mut bs) = (vec![], vec![]);
        for (i, (sconv, oconv)) in self.sconvs.iter().zip(&self.outs).enumerate() {
            x = sconv.forward_t(&x, train); // [B, 256, g, g], g = 4, 2, 1
            out.push(("StdConv", x.shallow_clone(), SCONV.get(i + 1).copied()));
            let (c, b) = oconv.forward(&x); // [B, g*g*k, C+1], [B, g*g*k, 4]
            out.push(("OutConv", Tensor::cat(&[&c, &b], 2), OUT.get(i + 1).copied()));
            cs.push(c);
            bs.push(b);
        }
        let (c, b) = (Tensor::cat(&cs, 1), Tensor::cat(&bs, 1)); // [B, A, C+1], [B, A, 4]
        let packed = Tensor::cat(&[&c, &b], 2);
        out.push(("cat (classes)", c, None));
        out.push(("cat (boxes)", b, None));
        out.push(("SsdOutput (packed)", packed, None));
        out
    }
}

/// The SSD head a config asks for: [`SsdHead`] for one grid, [`SsdMultiHead`] for several.
#[derive(Debug)]
pub enum SsdHeadNet {
    Single(SsdHead),
    Multi(SsdMultiHead),
}

impl SsdHeadNet {
    /// Variables under `p` (the model puts them under `head.`); `nin` = the body's channels.
    pub fn new(p: &nn::Path, cfg: &SsdConfig, nin: i64) -> Self {
        if cfg.anchors.grids.len() == 1 {
            SsdHeadNet::Single(SsdHead::new(p, cfg, nin))
        } else {
            SsdHeadNet::Multi(SsdMultiHead::new(p, cfg, nin))
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> SsdOutput {
        match self {
            SsdHeadNet::Single(h) => h.forward_t(x, train),
            SsdHeadNet::Multi(h) => h.forward_t(x, train),
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

// ---------------------------------------------------------------------------------------------
// Geometry

/// Lesson 9's `intersect`, `box_sz` and `jaccard` (here `iou`): one geometry, in [`crate::nms`].
pub use crate::nms::{box_sz, intersect, jaccard as iou};

/// Lesson 9's `actn_to_bb`: activations `[A, 4]` -> corners `[A, 4]`. With `t = tanh(actn)`,
/// centre = `t[:2]/2 * grid_size + anchor_centre` (at most half a cell away), size =
/// `(t[2:]/2 + 1) * anchor_size` (0.5x to 1.5x the anchor).
pub fn actn_to_bb(actn: &Tensor, anchors: &Anchors) -> Tensor {
    let t = actn.tanh(); // [A, 4]
    let ctr = t.narrow(1, 0, 2) / 2.0 * &anchors.grid_sizes + &anchors.centers; // [A, 2]
    let hw = (t.narrow(1, 2, 2) / 2.0 + 1.0) * &anchors.sizes; // [A, 2]
    hw2corners(&ctr, &hw)
}

/// The matching on plain numbers: `overlaps` is `[n_gt, n_anchors]` row-major. Returns each
/// anchor's overlap (1.99 where forced) and ground-truth index. Ties go to the lower index (as
/// PyTorch's `max(dim)`); NaN overlaps count as -inf.
pub fn match_anchors(overlaps: &[f32], n_gt: usize, n_anc: usize, matching: Matching) -> (Vec<f32>, Vec<i64>) {
    assert_eq!(overlaps.len(), n_gt * n_anc, "overlaps must be n_gt x n_anchors");
    let at = |g: usize, a: usize| {
        let v = overlaps[g * n_anc + a];
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    // Each anchor: the ground truth it overlaps most (the lesson's `overlaps.max(0)`).
    let mut gt_overlap = vec![0f32; n_anc];
    let mut gt_idx = vec![0i64; n_anc];
    if n_gt == 0 {
        return (gt_overlap, gt_idx);
    }
    for a in 0..n_anc {
        let mut best = 0;
        for g in 1..n_gt {
            if at(g, a) > at(best, a) {
                best = g;
            }
        }
        gt_overlap[a] = at(best, a).max(0.0); // -inf from NaN overlaps -> 0
        gt_idx[a] = best as i64;
    }
    // Each ground truth's best anchor among `free` (the lesson's `overlaps.max(1)`).
    let best_anchor = |g: usize, free: &dyn Fn(usize) -> bool| -> Option<usize> {
        let mut best: Option<usize> = None;
        for a in (0..n_anc).filter(|&a| free(a)) {
            if best.is_none_or(|b| at(g, a) > at(g, b)) {
                best = Some(a);
            }
        }
        best
    };
    match matching {
        Matching::Lesson => {
            let prior: Vec<usize> = (0..n_gt).filter_map(|g| best_anchor(g, &|_| true)).collect();
            for &a in &prior {
                gt_overlap[a] = 1.99;
            }
            for (g, &a) in prior.iter().enumerate() {
                gt_idx[a] = g as i64;
            }
        }
        Matching::NoGtLost => {
            let best_iou: Vec<f32> = (0..n_gt).map(|g| (0..n_anc).map(|a| at(g, a)).fold(f32::NEG_INFINITY, f32::max)).collect();
            let mut order: Vec<usize> = (0..n_gt).collect();
            order.sort_by(|&a, &b| best_iou[b].total_cmp(&best_iou[a]).then(a.cmp(&b)));
            let mut taken = vec![false; n_anc];
            for g in order {
                if let Some(a) = best_anchor(g, &|a| !taken[a]) {
                    taken[a] = true;
                    gt_overlap[a] = 1.99;
                    gt_idx[a] = g as i64;
                }
            }
        }
    }
    (gt_overlap, gt_idx)
}

/// Lesson 9's `map_to_ground_truth(overlaps)`: `overlaps` = IoU `[n_gt, A]` -> `(gt_overlap
/// [A] float, gt_idx [A] int64)` on the same device. See [`Matching`] for how forced matches
/// are chosen. (Computed on the CPU: the matrix is small.)
pub fn map_to_ground_truth(overlaps: &Tensor, matching: Matching) -> (Tensor, Tensor) {
    let (n_gt, n_anc) = (overlaps.size()[0], overlaps.size()[1]);
    let v: Vec<f32> = Vec::try_from(overlaps.detach().to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).unwrap_or_default();
    let (o, i) = match_anchors(&v, n_gt as usize, n_anc as usize, matching);
    let dev = overlaps.device();
    (Tensor::from_slice(&o).to_device(dev), Tensor::from_slice(&i).to_device(dev))
}

/// Lesson 9's `get_y(bbox, clas)`: one image's padded pixel boxes `[N, 4]` and classes `[N]` ->
/// the rows with `y2 - y1 > 0` (padding is all zeros), boxes divided by `sz`. Note it also
/// drops a real box one pixel high; [`ssd_loss`] uses the batch's `n_objects` when given.
pub fn get_y(bbox: &Tensor, clas: &Tensor, sz: f64) -> (Tensor, Tensor) {
    let bbox = bbox.view([-1, 4]) / sz; // [N, 4]
    let keep = (bbox.select(1, 2) - bbox.select(1, 0)).gt(0.0).nonzero().squeeze_dim(1);
    (bbox.index_select(0, &keep), clas.view([-1]).index_select(0, &keep))
}

// ---------------------------------------------------------------------------------------------
// Loss

/// The two parts of the SSD loss, by name; [`LossParts::total`] is what training minimises.
#[derive(Debug)]
pub struct LossParts {
    /// Mean L1 distance of positive anchors' boxes to their ground truths (0..1 units), summed
    /// over the batch's images.
    pub loc: Tensor,
    /// The classification loss, summed over the batch's images.
    pub class: Tensor,
}

impl LossParts {
    pub fn total(&self) -> Tensor {
        &self.loc + &self.class
    }
}

/// PyTorch 0.3's `binary_cross_entropy_with_logits` (elementwise, before the weight): the form
/// the lesson ran, which lets a gradient flow through a weight computed from the logits.
fn bce_with_logits(x: &Tensor, t: &Tensor) -> Tensor {
    let max_val = (-x).clamp_min(0.0);
    x - x * t + &max_val + ((-&max_val).exp() + (-x - &max_val).exp()).log()
}

/// Lesson 9's `BCE_Loss(C)` / `FocalLoss(C)`: `logits [A, C+1]`, `gt_clas [A]` in `0..=C` (`C` =
/// background) -> scalar. Targets are one-hot over `C + 1`; the background column is dropped
/// from targets and logits; the summed (weighted) BCE is divided by `C`.
pub fn class_loss(logits: &Tensor, gt_clas: &Tensor, loss: ClassLoss) -> Tensor {
    let c = logits.size()[1] - 1;
    let t = gt_clas.one_hot(c + 1).to_kind(logits.kind()).narrow(1, 0, c); // [A, C]
    let x = logits.narrow(1, 0, c); // [A, C]
    let l = bce_with_logits(&x, &t); // [A, C]
    let l = match loss {
        ClassLoss::Bce => l,
        ClassLoss::Focal { alpha, gamma } => {
            let p = x.sigmoid();
            let (one_m_p, one_m_t): (Tensor, Tensor) = (1.0 - &p, 1.0 - &t);
            let pt: Tensor = &p * &t + one_m_p * &one_m_t;
            let w: Tensor = &t * alpha + one_m_t * (1.0 - alpha);
            let one_m_pt: Tensor = 1.0 - pt;
            l * (w * one_m_pt.pow_tensor_scalar(gamma))
        }
    };
    l.sum(Kind::Float) / c as f64
}

/// Lesson 9's `ssd_1_loss` for one image whose padding is already removed: `class_logits [A,
/// C+1]`, `box_offsets [A, 4]`, ground truth `bbox [n, 4]` in 0..1 corners and `clas [n]`.
/// Anchors matched with overlap > `pos_iou` are positives; the others are background (`C`).
/// `loc` = mean |box - ground truth| over the positives (0 when there are none); `class` =
/// [`class_loss`]. An image with no objects has only background anchors.
pub fn ssd_1_loss(class_logits: &Tensor, box_offsets: &Tensor, bbox: &Tensor, clas: &Tensor, anchors: &Anchors, cfg: &SsdConfig) -> LossParts {
    let n_anc = anchors.len() as i64;
    let dev = class_logits.device();
    let n_gt = bbox.size()[0];
    let (gt_clas, loc) = if n_gt == 0 {
        (Tensor::full([n_anc], cfg.n_classes, (Kind::Int64, dev)), Tensor::zeros([], (Kind::Float, dev)))
    } else {
        let overlaps = iou(&bbox.detach(), &anchors.corners); // [n, A]
        let v: Vec<f32> = Vec::try_from(overlaps.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).unwrap_or_default();
        let (gt_overlap, gt_idx) = match_anchors(&v, n_gt as usize, n_anc as usize, cfg.matching);
        let pos: Vec<bool> = gt_overlap.iter().map(|&o| o as f64 > cfg.pos_iou).collect();
        let pos_idx: Vec<i64> = (0..n_anc).filter(|&a| pos[a as usize]).collect();
        let gt_idx = Tensor::from_slice(&gt_idx).to_device(dev); // [A]
        let neg = Tensor::from_slice(&pos).to_device(dev).logical_not(); // [A]
        let gt_clas = clas.to_kind(Kind::Int64).index_select(0, &gt_idx).masked_fill(&neg, cfg.n_classes); // [A]
        let loc = if pos_idx.is_empty() {
            Tensor::zeros([], (Kind::Float, dev))
        } else {
            let pos_idx = Tensor::from_slice(&pos_idx).to_device(dev); // [P]
            let a_ic = actn_to_bb(&box_offsets.index_select(0, &pos_idx), &anchors.index_select(&pos_idx)); // [P, 4]
            let gt_bbox = bbox.index_select(0, &gt_idx.index_select(0, &pos_idx)); // [P, 4]
            (a_ic - gt_bbox).abs().mean(Kind::Float)
        };
        (gt_clas, loc)
    };
    LossParts { loc, class: class_loss(class_logits, &gt_clas, cfg.class_loss) }
}

/// Lesson 9's `ssd_loss`: the sum over the batch's images of [`ssd_1_loss`].
///
/// `bbox [B, N, 4]` are pixel boxes `(top, left, bottom, right)` of `sz x sz` images and `class
/// [B, N]`, with zero rows in front as padding. With `n_objects [B]` (the loader's
/// [`crate::data::BatchTarget::Boxes`]) the last `n_objects[i]` rows of image `i` are its
/// objects; with `None` padding is removed as the lesson's [`get_y`] does (rows with `bottom -
/// top <= 0` dropped). Errors when the output's anchors or classes do not fit `anchors`/`cfg`,
/// or a class is out of range.
pub fn ssd_loss(
    out: &SsdOutput,
    bbox: &Tensor,
    class: &Tensor,
    n_objects: Option<&Tensor>,
    sz: f64,
    anchors: &Anchors,
    cfg: &SsdConfig,
) -> Result<LossParts> {
    let (b, a) = (out.class_logits.size()[0], out.class_logits.size()[1]);
    if a != anchors.len() as i64 || out.box_offsets.size()[1] != a {
        return Err(Error::Invalid(format!(
            "the SSD head makes {a} anchors per image but the anchors are {} (grids {:?}, k {}): is the input size the one the config is for? (SsdConfig::check)",
            anchors.len(),
            anchors.config.grids,
            anchors.config.k()
        )));
    }
    if out.class_logits.size()[2] != cfg.n_classes + 1 {
        return Err(Error::Invalid(format!("the SSD head predicts {} classes, the config says {} + background", out.class_logits.size()[2], cfg.n_classes)));
    }
    if bbox.size().len() != 3 || bbox.size()[0] != b || class.size() != bbox.size()[..2] {
        return Err(Error::Invalid(format!("SSD targets: expected bbox [{b}, N, 4] and class [{b}, N], found {:?} and {:?}", bbox.size(), class.size())));
    }
    let n = bbox.size()[1];
    let counts: Option<Vec<i64>> = match n_objects {
        Some(t) => Some(Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Int64).flatten(0, -1))?),
        None => None,
    };
    if let Some(c) = &counts {
        if c.len() as i64 != b || c.iter().any(|&k| k < 0 || k > n) {
            return Err(Error::Invalid(format!("SSD targets: n_objects {c:?} does not fit {b} images of {n} rows")));
        }
    }
    if class.numel() > 0 {
        let (lo, hi) = (i64::try_from(class.min())?, i64::try_from(class.max())?);
        if lo < 0 || hi >= cfg.n_classes {
            return Err(Error::Invalid(format!("SSD targets: classes must be in 0..{}, found {lo}..={hi}", cfg.n_classes)));
        }
    }
    let anchors = if anchors.device() == out.class_logits.device() { anchors.clone() } else { anchors.to_device(out.class_logits.device()) };
    let (mut loc, mut cls) = (None::<Tensor>, None::<Tensor>);
    for i in 0..b {
        let (bb, cl) = match &counts {
            Some(c) => (bbox.get(i).narrow(0, n - c[i as usize], c[i as usize]) / sz, class.get(i).narrow(0, n - c[i as usize], c[i as usize])),
            None => get_y(&bbox.get(i), &class.get(i), sz),
        };
        let (lc, bo) = out.image(i);
        let parts = ssd_1_loss(&lc, &bo, &bb.to_kind(Kind::Float), &cl, &anchors, cfg);
        loc = Some(loc.map_or(parts.loc.shallow_clone(), |l| l + &parts.loc));
        cls = Some(cls.map_or(parts.class.shallow_clone(), |c| c + &parts.class));
    }
    let zero = || Tensor::zeros([], (Kind::Float, out.class_logits.device()));
    Ok(LossParts { loc: loc.unwrap_or_else(zero), class: cls.unwrap_or_else(zero) })
}

impl Anchors {
    /// The anchors at `idx` (`[P]` int64) only.
    pub fn index_select(&self, idx: &Tensor) -> Anchors {
        Anchors {
            centers: self.centers.index_select(0, idx),
            sizes: self.sizes.index_select(0, idx),
            grid_sizes: self.grid_sizes.index_select(0, idx),
            corners: self.corners.index_select(0, idx),
            config: self.config.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding and display

/// One image's predictions, decoded: every anchor's box and class probabilities.
#[derive(Debug)]
pub struct Decoded {
    /// `[A, 4]` corners `(y1, x1, y2, x2)` in 0..1 ([`actn_to_bb`]).
    pub boxes: Tensor,
    /// `[A, C+1]` `sigmoid` of the class logits (background last), as the lesson plots them.
    pub probs: Tensor,
}

impl Decoded {
    /// The boxes in pixels of an `sz x sz` image.
    pub fn bboxes(&self, sz: f32) -> Vec<BBox> {
        corners_to_bboxes(&self.boxes, sz)
    }

    /// Each anchor's most likely class over all `C + 1` columns and its probability (the
    /// lesson's `plot_results`: `b_clas.max(1)`, background included).
    pub fn best(&self) -> (Vec<usize>, Vec<f32>) {
        let (p, c) = self.probs.to_device(Device::Cpu).to_kind(Kind::Float).max_dim(1, false);
        let p: Vec<f32> = Vec::try_from(p).unwrap_or_default();
        let c: Vec<i64> = Vec::try_from(c).unwrap_or_default();
        (c.into_iter().map(|c| c as usize).collect(), p)
    }
}

/// Every image's boxes and class probabilities (no gradient), for plotting and NMS.
pub fn decode(out: &SsdOutput, anchors: &Anchors) -> Vec<Decoded> {
    tch::no_grad(|| {
        let anchors = anchors.to_device(out.box_offsets.device());
        (0..out.class_logits.size()[0])
            .map(|i| {
                let (c, b) = out.image(i);
                Decoded { boxes: actn_to_bb(&b.to_kind(Kind::Float), &anchors), probs: c.to_kind(Kind::Float).sigmoid() }
            })
            .collect()
    })
}

/// Lesson 9's `plot_results(thresh)` for a batch: each image with the anchors' boxes whose best
/// probability (background included, labelled `bg`) exceeds `thresh` times the image's highest,
/// `cols` panels wide. `out` is the model's packed output `[B, A, C+1+4]`.
pub fn show_results(batch: &crate::data::Batch, out: &Tensor, cfg: &SsdConfig, classes: &[String], thresh: f32, cols: u32) -> Result<Figure> {
    let out = SsdOutput::unpack(out, cfg.n_classes)?;
    let anchors = Anchors::new(&cfg.anchors, out.box_offsets.device());
    let images = batch.images()?;
    let n = images.len() as u32;
    let cell = images.first().map(|i| i.width()).unwrap_or(1).max(1);
    let cols = cols.clamp(1, n.max(1));
    let mut fig = Figure::grid(n.div_ceil(cols).max(1), cols, cell, cell)?;
    for (i, (im, d)) in images.iter().zip(decode(&out, &anchors)).enumerate() {
        let (clas, prs) = d.best();
        let max = prs.iter().copied().fold(0f32, f32::max);
        let boxes = d.bboxes(im.width() as f32);
        fig.ax(i).show_ground_truth(im, &boxes, Some(&clas), Some(&prs), max * thresh, classes);
    }
    Ok(fig)
}
