"""Lesson 9's final SSD in PyTorch, written as in pascal-multi.ipynb, for the training-step
benchmarks (benches/train_peer.py on the CPU, gpu/train_step_peer.py in the GPU bundle).

`SSD_MultiHead(k=9, bias=-4.)` on a ResNet34 body (torchvision, children[:-2]) with the 189
anchors, and the lesson's `ssd_loss`: a Python loop over the batch's images, each through
`get_y`, `jaccard`, `map_to_ground_truth` (with its `for i, o in enumerate(prior_idx)` loop),
boolean indexing of the positives and `BCE_Loss`. Only what PyTorch 0.3 -> 2.x requires changed
(no `V(...)`, `1-pos` -> `~pos`); the notebook's globals (`anchors`, `grid_sizes`, `anchor_cnr`)
live in a `Lesson` object, on the model's device. `one_hot_embedding` builds its targets on the
CPU, as the notebook's does, and `V()` then moved them to the GPU: that copy is kept.

The head's modules are named as fastdet's variables (`head.sconv0.conv.weight`, ..,
`head.out3.oconv2.bias`); the lesson's unused `out0` is left out, as fastdet leaves it out.
"""
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

N_CLASSES = 20


def hw2corners(ctr, hw):
    return torch.cat([ctr - hw / 2, ctr + hw / 2], dim=1)


def anchors_189():
    anc_grids = [4, 2, 1]
    anc_zooms = [0.7, 1., 1.3]
    anc_ratios = [(1., 1.), (1., 0.5), (0.5, 1.)]
    anchor_scales = [(anz * i, anz * j) for anz in anc_zooms for (i, j) in anc_ratios]
    k = len(anchor_scales)
    anc_offsets = [1 / (o * 2) for o in anc_grids]
    anc_x = np.concatenate([np.repeat(np.linspace(ao, 1 - ao, ag), ag) for ao, ag in zip(anc_offsets, anc_grids)])
    anc_y = np.concatenate([np.tile(np.linspace(ao, 1 - ao, ag), ag) for ao, ag in zip(anc_offsets, anc_grids)])
    anc_ctrs = np.repeat(np.stack([anc_x, anc_y], axis=1), k, axis=0)
    anc_sizes = np.concatenate([np.array([[o / ag, p / ag] for i in range(ag * ag) for o, p in anchor_scales])
                                for ag in anc_grids])
    grid_sizes = torch.from_numpy(np.concatenate([np.array([1 / ag for i in range(ag * ag) for o, p in anchor_scales])
                                                  for ag in anc_grids])).unsqueeze(1).float()
    anchors = torch.from_numpy(np.concatenate([anc_ctrs, anc_sizes], axis=1)).float()
    anchor_cnr = hw2corners(anchors[:, :2], anchors[:, 2:])
    return k, anchors, grid_sizes, anchor_cnr


def flatten_conv(x, k):
    bs, nf, gx, gy = x.size()
    x = x.permute(0, 2, 3, 1).contiguous()
    return x.view(bs, -1, nf // k)


class StdConv(nn.Module):
    def __init__(self, nin, nout, stride=2, drop=0.1):
        super().__init__()
        self.conv = nn.Conv2d(nin, nout, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(nout)
        self.drop = nn.Dropout(drop)

    def forward(self, x): return self.drop(self.bn(F.relu(self.conv(x))))


class OutConv(nn.Module):
    def __init__(self, k, nin, bias):
        super().__init__()
        self.k = k
        self.oconv1 = nn.Conv2d(nin, (N_CLASSES + 1) * k, 3, padding=1)
        self.oconv2 = nn.Conv2d(nin, 4 * k, 3, padding=1)
        self.oconv1.bias.data.zero_().add_(bias)

    def forward(self, x):
        return [flatten_conv(self.oconv1(x), self.k), flatten_conv(self.oconv2(x), self.k)]


class SSD_MultiHead(nn.Module):
    def __init__(self, k, bias, drop):
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.sconv0 = StdConv(512, 256, stride=1, drop=drop)
        self.sconv1 = StdConv(256, 256, drop=drop)
        self.sconv2 = StdConv(256, 256, drop=drop)
        self.sconv3 = StdConv(256, 256, drop=drop)
        self.out1 = OutConv(k, 256, bias)
        self.out2 = OutConv(k, 256, bias)
        self.out3 = OutConv(k, 256, bias)

    def forward(self, x):
        x = self.drop(F.relu(x))
        x = self.sconv0(x)
        x = self.sconv1(x)
        o1c, o1l = self.out1(x)
        x = self.sconv2(x)
        o2c, o2l = self.out2(x)
        x = self.sconv3(x)
        o3c, o3l = self.out3(x)
        return [torch.cat([o1c, o2c, o3c], dim=1), torch.cat([o1l, o2l, o3l], dim=1)]


class SSD(nn.Module):
    """ResNet34 body + `SSD_MultiHead`: the variables are `body.*` (torchvision's names after
    `state_dict_for_fastdet`) and `head.*`."""

    def __init__(self, drop=0.4):
        super().__init__()
        m = torchvision.models.resnet34(weights=None)
        self.resnet = m
        self.body = nn.Sequential(*list(m.children())[:-2])
        self.head = SSD_MultiHead(9, -4., drop)

    def forward(self, x): return self.head(self.body(x))

    def state_dict_for_fastdet(self):
        """Every variable under fastdet's names (torchvision's for the body, `head.*`)."""
        sd = {k: v for k, v in self.resnet.state_dict().items()
              if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
        sd.update({f"head.{k}": v for k, v in self.head.state_dict().items() if not k.endswith("num_batches_tracked")})
        return {k: v.detach().clone().contiguous().cpu() for k, v in sd.items()}


def binary_cross_entropy_with_logits_03(input, target, weight=None, size_average=True):
    max_val = (-input).clamp(min=0)
    loss = input - input * target + max_val + ((-max_val).exp() + (-input - max_val).exp()).log()
    if weight is not None:
        loss = loss * weight
    return loss.mean() if size_average else loss.sum()


def one_hot_embedding(labels, num_classes):
    return torch.eye(num_classes)[labels.data.cpu()]


class Lesson:
    """The notebook's globals and its loss functions, on `device`."""

    def __init__(self, device, sz=224):
        self.sz = sz
        k, anchors, grid_sizes, anchor_cnr = anchors_189()
        self.k, self.anchors, self.grid_sizes, self.anchor_cnr = (
            k, anchors.to(device), grid_sizes.to(device), anchor_cnr.to(device))

    def loss_f(self, pred, targ):  # BCE_Loss(len(id2cat))
        t = one_hot_embedding(targ, N_CLASSES + 1)
        t = t[:, :-1].contiguous().to(pred.device)  # V(...)
        x = pred[:, :-1]
        return binary_cross_entropy_with_logits_03(x, t, None, size_average=False) / N_CLASSES

    def get_y(self, bbox, clas):
        bbox = bbox.view(-1, 4) / self.sz
        bb_keep = ((bbox[:, 2] - bbox[:, 0]) > 0).nonzero()[:, 0]
        return bbox[bb_keep], clas[bb_keep]

    def actn_to_bb(self, actn, anchors):
        actn_bbs = torch.tanh(actn)
        actn_centers = (actn_bbs[:, :2] / 2 * self.grid_sizes) + anchors[:, :2]
        actn_hw = (actn_bbs[:, 2:] / 2 + 1) * anchors[:, 2:]
        return hw2corners(actn_centers, actn_hw)

    @staticmethod
    def intersect(box_a, box_b):
        max_xy = torch.min(box_a[:, None, 2:], box_b[None, :, 2:])
        min_xy = torch.max(box_a[:, None, :2], box_b[None, :, :2])
        inter = torch.clamp((max_xy - min_xy), min=0)
        return inter[:, :, 0] * inter[:, :, 1]

    @staticmethod
    def box_sz(b): return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))

    def jaccard(self, box_a, box_b):
        inter = self.intersect(box_a, box_b)
        union = self.box_sz(box_a).unsqueeze(1) + self.box_sz(box_b).unsqueeze(0) - inter
        return inter / union

    @staticmethod
    def map_to_ground_truth(overlaps, print_it=False):
        prior_overlap, prior_idx = overlaps.max(1)
        if print_it: print(prior_overlap)
        gt_overlap, gt_idx = overlaps.max(0)
        gt_overlap[prior_idx] = 1.99
        for i, o in enumerate(prior_idx): gt_idx[o] = i
        return gt_overlap, gt_idx

    def ssd_1_loss(self, b_c, b_bb, bbox, clas, print_it=False):
        bbox, clas = self.get_y(bbox, clas)
        a_ic = self.actn_to_bb(b_bb, self.anchors)
        overlaps = self.jaccard(bbox.data, self.anchor_cnr.data)
        gt_overlap, gt_idx = self.map_to_ground_truth(overlaps, print_it)
        gt_clas = clas[gt_idx]
        pos = gt_overlap > 0.4
        pos_idx = torch.nonzero(pos)[:, 0]
        gt_clas[~pos] = N_CLASSES
        gt_bbox = bbox[gt_idx]
        loc_loss = ((a_ic[pos_idx] - gt_bbox[pos_idx]).abs()).mean()
        clas_loss = self.loss_f(b_c, gt_clas)
        return loc_loss, clas_loss

    def ssd_loss(self, pred, targ, print_it=False):
        lcs, lls = 0., 0.
        for b_c, b_bb, bbox, clas in zip(*pred, *targ):
            loc_loss, clas_loss = self.ssd_1_loss(b_c, b_bb, bbox, clas, print_it)
            lls += loc_loss
            lcs += clas_loss
        if print_it: print(f'loc: {lls.item()}, clas: {lcs.item()}')
        return lls + lcs


def random_targets(bs, sz, g, n_max=4, device="cpu"):
    """Padded targets as the lesson's loader makes them: `bbox [bs, n_max, 4]` float pixels,
    `clas [bs, n_max]` int64, each image's 1..n_max objects at the end, zeros in front; and the
    counts `[bs]`."""
    counts = torch.randint(1, n_max + 1, (bs,), generator=g)
    bbox = torch.zeros(bs, n_max, 4)
    clas = torch.zeros(bs, n_max, dtype=torch.int64)
    for i, n in enumerate(counts.tolist()):
        c = torch.rand(n, 2, 2, generator=g) * (sz - 8)
        lo, hi = c.min(1).values, c.max(1).values + 8  # at least 8 px each way
        bbox[i, n_max - n:] = torch.stack([lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]], 1).round()
        clas[i, n_max - n:] = torch.randint(0, N_CLASSES, (n,), generator=g)
    return bbox.to(device), clas.to(device), counts.to(device)
