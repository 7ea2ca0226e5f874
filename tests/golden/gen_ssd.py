"""Golden values for lesson 9's SSD (pascal-multi.ipynb), for tests/it/ssd.rs.

The functions below are the lesson's, copied as written, with only what PyTorch 0.3 -> 2.x
requires changed (no `V(...)`, `1-pos` -> `~pos`, `.data[0]` -> `.item()`), and the globals the
notebook relies on (`anchors`, `grid_sizes`, `anchor_cnr`, `id2cat`, `sz`) passed in through
small setters. `binary_cross_entropy_with_logits_03` is PyTorch 0.3's Python implementation of
`F.binary_cross_entropy_with_logits`: it lets the gradient flow through `weight`, which
FocalLoss relies on (today's fused op refuses a weight that requires grad).

Fixed float32 inputs from seeded generators; outputs are small JSON.
Run with the project's venv python:  python tests/golden/gen_ssd.py
It writes tests/golden/ssd.json next to this file.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

id2cat = list(range(20))  # only len(id2cat) is used
sz = 224


# ---------------------------------------------------------------- anchors (lesson 9, verbatim)
def hw2corners(ctr, hw):
    return torch.cat([ctr - hw / 2, ctr + hw / 2], dim=1)


def anchors_4x4():
    anc_grid = 4
    k = 1
    anc_offset = 1 / (anc_grid * 2)
    anc_x = np.repeat(np.linspace(anc_offset, 1 - anc_offset, anc_grid), anc_grid)
    anc_y = np.tile(np.linspace(anc_offset, 1 - anc_offset, anc_grid), anc_grid)
    anc_ctrs = np.tile(np.stack([anc_x, anc_y], axis=1), (k, 1))
    anc_sizes = np.array([[1 / anc_grid, 1 / anc_grid] for i in range(anc_grid * anc_grid)])
    anchors = torch.from_numpy(np.concatenate([anc_ctrs, anc_sizes], axis=1)).float()
    grid_sizes = torch.from_numpy(np.array([1 / anc_grid])).unsqueeze(1).float()
    anchor_cnr = hw2corners(anchors[:, :2], anchors[:, 2:])
    return anchors, grid_sizes, anchor_cnr


def anchors_189():
    anc_grids = [4, 2, 1]
    anc_zooms = [0.7, 1., 1.3]
    anc_ratios = [(1., 1.), (1., 0.5), (0.5, 1.)]
    anchor_scales = [(anz * i, anz * j) for anz in anc_zooms for (i, j) in anc_ratios]
    k = len(anchor_scales)
    anc_offsets = [1 / (o * 2) for o in anc_grids]
    anc_x = np.concatenate([np.repeat(np.linspace(ao, 1 - ao, ag), ag)
                            for ao, ag in zip(anc_offsets, anc_grids)])
    anc_y = np.concatenate([np.tile(np.linspace(ao, 1 - ao, ag), ag)
                            for ao, ag in zip(anc_offsets, anc_grids)])
    anc_ctrs = np.repeat(np.stack([anc_x, anc_y], axis=1), k, axis=0)
    anc_sizes = np.concatenate([np.array([[o / ag, p / ag] for i in range(ag * ag) for o, p in anchor_scales])
                                for ag in anc_grids])
    grid_sizes = torch.from_numpy(np.concatenate([np.array([1 / ag for i in range(ag * ag) for o, p in anchor_scales])
                                                  for ag in anc_grids])).unsqueeze(1).float()
    anchors = torch.from_numpy(np.concatenate([anc_ctrs, anc_sizes], axis=1)).float()
    anchor_cnr = hw2corners(anchors[:, :2], anchors[:, 2:])
    return anchors, grid_sizes, anchor_cnr


anchors, grid_sizes, anchor_cnr = anchors_189()


def use_anchors(a):
    global anchors, grid_sizes, anchor_cnr
    anchors, grid_sizes, anchor_cnr = a


# ---------------------------------------------------------------- model pieces
def flatten_conv(x, k):
    bs, nf, gx, gy = x.size()
    x = x.permute(0, 2, 3, 1).contiguous()
    return x.view(bs, -1, nf // k)


# ---------------------------------------------------------------- loss (lesson 9, verbatim)
def one_hot_embedding(labels, num_classes):
    return torch.eye(num_classes)[labels.data.cpu()]


def binary_cross_entropy_with_logits_03(input, target, weight=None, size_average=True):
    # PyTorch 0.3.1 torch/nn/functional.py
    max_val = (-input).clamp(min=0)
    loss = input - input * target + max_val + ((-max_val).exp() + (-input - max_val).exp()).log()
    if weight is not None:
        loss = loss * weight
    if size_average:
        return loss.mean()
    else:
        return loss.sum()


class BCE_Loss(torch.nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, pred, targ):
        t = one_hot_embedding(targ, self.num_classes + 1)
        t = t[:, :-1].contiguous()
        x = pred[:, :-1]
        w = self.get_weight(x, t)
        return binary_cross_entropy_with_logits_03(x, t, w, size_average=False) / self.num_classes

    def get_weight(self, x, t): return None


class FocalLoss(BCE_Loss):
    gamma = 1

    def get_weight(self, x, t):
        alpha, gamma = 0.25, self.gamma
        p = x.sigmoid()
        pt = p * t + (1 - p) * (1 - t)
        w = alpha * t + (1 - alpha) * (1 - t)
        return w * (1 - pt).pow(gamma)


loss_f = BCE_Loss(len(id2cat))


def intersect(box_a, box_b):
    max_xy = torch.min(box_a[:, None, 2:], box_b[None, :, 2:])
    min_xy = torch.max(box_a[:, None, :2], box_b[None, :, :2])
    inter = torch.clamp((max_xy - min_xy), min=0)
    return inter[:, :, 0] * inter[:, :, 1]


def box_sz(b): return ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))


def jaccard(box_a, box_b):
    inter = intersect(box_a, box_b)
    union = box_sz(box_a).unsqueeze(1) + box_sz(box_b).unsqueeze(0) - inter
    return inter / union


def get_y(bbox, clas):
    bbox = bbox.view(-1, 4) / sz
    bb_keep = ((bbox[:, 2] - bbox[:, 0]) > 0).nonzero()[:, 0]
    return bbox[bb_keep], clas[bb_keep]


def actn_to_bb(actn, anchors):
    actn_bbs = torch.tanh(actn)
    actn_centers = (actn_bbs[:, :2] / 2 * grid_sizes) + anchors[:, :2]
    actn_hw = (actn_bbs[:, 2:] / 2 + 1) * anchors[:, 2:]
    return hw2corners(actn_centers, actn_hw)


def map_to_ground_truth(overlaps, print_it=False):
    prior_overlap, prior_idx = overlaps.max(1)
    if print_it: print(prior_overlap)
    gt_overlap, gt_idx = overlaps.max(0)
    gt_overlap[prior_idx] = 1.99
    for i, o in enumerate(prior_idx): gt_idx[o] = i
    return gt_overlap, gt_idx


def ssd_1_loss(b_c, b_bb, bbox, clas, print_it=False):
    bbox, clas = get_y(bbox, clas)
    a_ic = actn_to_bb(b_bb, anchors)
    overlaps = jaccard(bbox.data, anchor_cnr.data)
    gt_overlap, gt_idx = map_to_ground_truth(overlaps, print_it)
    gt_clas = clas[gt_idx]
    pos = gt_overlap > 0.4
    pos_idx = torch.nonzero(pos)[:, 0]
    gt_clas[~pos] = len(id2cat)
    gt_bbox = bbox[gt_idx]
    loc_loss = ((a_ic[pos_idx] - gt_bbox[pos_idx]).abs()).mean()
    clas_loss = loss_f(b_c, gt_clas)
    return loc_loss, clas_loss


def ssd_loss(pred, targ, print_it=False):
    lcs, lls = 0., 0.
    for b_c, b_bb, bbox, clas in zip(*pred, *targ):
        loc_loss, clas_loss = ssd_1_loss(b_c, b_bb, bbox, clas, print_it)
        lls += loc_loss
        lcs += clas_loss
    if print_it: print(f'loc: {lls.item()}, clas: {lcs.item()}')
    return lls + lcs


# ---------------------------------------------------------------- cases
def rand_boxes(g, n, lo=0.0, hi=1.0):
    c = torch.rand(n, 2, 2, generator=g) * (hi - lo) + lo
    a, b = c.min(1).values, c.max(1).values
    return torch.stack([a[:, 0], a[:, 1], b[:, 0], b[:, 1]], 1).float()


def det(shape, scale, shift):
    """Deterministic float32 inputs, reproduced in tests/it/ssd.rs: sin(0.7 i + 0.3) * scale + shift
    over the flat index i, computed in float64."""
    n = int(np.prod(shape))
    v = np.sin(np.arange(n, dtype=np.float64) * 0.7 + 0.3) * scale + shift
    return torch.from_numpy(v.astype(np.float32)).view(*shape)


def checksums(t):
    """sum, sum |.|, and sum t_i * cos(0.3 i): enough to catch a wrong gradient without storing it."""
    t = t.double().flatten()
    w = torch.cos(torch.arange(t.numel(), dtype=torch.float64) * 0.3)
    return [t.sum().item(), t.abs().sum().item(), (t * w).sum().item()]


def anchors_doc(a):
    anc, gs, cnr = a
    return {"anchors": anc.tolist(), "grid_sizes": gs.tolist(), "anchor_cnr": cnr.tolist()}


def class_loss_case(g, n_anc, gamma):
    pred = (torch.randn(n_anc, 21, generator=g) * 2 - 2).float()
    targ = torch.randint(0, 21, (n_anc,), generator=g)
    out = {"pred": pred.tolist(), "targ": targ.tolist()}
    for name, lf in (("bce", BCE_Loss(20)), ("focal", FocalLoss(20))):
        if name == "focal":
            lf.gamma = gamma
        p = pred.clone().requires_grad_()
        loss = lf(p, targ)
        loss.backward()
        out[name] = {"loss": loss.item(), "grad": p.grad.tolist()}
    # BCE_Loss equals today's fused op when there is no weight.
    t = torch.eye(21)[targ][:, :-1]
    out["bce_fused"] = (F.binary_cross_entropy_with_logits(pred[:, :-1], t, reduction="sum") / 20).item()
    return out


ROWS = (0, 4, 36, 100, 150, 188)


def ssd_case(g):
    use_anchors(anchors_189())
    b_c = det((2, 189, 21), 2.0, -3.0)  # not stored: tests/it/ssd.rs makes the same
    b_bb = det((2, 189, 4), 1.5, 0.0)
    # pixels, y1 x1 y2 x2; zero rows are the lesson's padding, in front
    bbox = torch.tensor([
        [[0, 0, 0, 0], [20, 30, 120, 150], [100, 100, 200, 220], [50, 10, 90, 60]],
        [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [10, 5, 215, 200]],
    ]).float()
    clas = torch.tensor([[0, 14, 6, 11], [0, 0, 0, 2]])
    out = {"b_c": "det((2, 189, 21), 2.0, -3.0)", "b_bb": "det((2, 189, 4), 1.5, 0.0)", "bbox": bbox.tolist(), "clas": clas.tolist(), "sz": sz}
    global loss_f
    for name, lf in (("bce", BCE_Loss(20)), ("focal", FocalLoss(20))):
        loss_f = lf
        c = b_c.clone().requires_grad_()
        l = b_bb.clone().requires_grad_()
        per_image = [ssd_1_loss(c[i], l[i], bbox[i], clas[i]) for i in range(2)]
        total = ssd_loss([c, l], [bbox, clas])
        total.backward()
        out[name] = {
            "loc": [p[0].item() for p in per_image],
            "clas": [p[1].item() for p in per_image],
            "total": total.item(),
            "grad_c_checksums": checksums(c.grad),
            "grad_c0_rows": {str(r): c.grad[0, r].tolist() for r in ROWS},
            "grad_bb_checksums": checksums(l.grad),
            "grad_bb0": l.grad[0].tolist(),
        }
    loss_f = BCE_Loss(20)
    # the matching of image 0, for reference
    bb, cl = get_y(bbox[0], clas[0])
    ov = jaccard(bb, anchor_cnr)
    go, gi = map_to_ground_truth(ov)
    out["match0"] = {"gt_overlap": go.tolist(), "gt_idx": gi.tolist()}
    # The lesson's "Testing" cells on image 0, as written there (thresh 0.5, F.cross_entropy).
    b_clasi, b_bboxi = b_c[0], b_bb[0]
    bbox0, clas0 = get_y(bbox[0], clas[0])
    a_ic = actn_to_bb(b_bboxi, anchors)
    overlaps = jaccard(bbox0, anchor_cnr)
    prior_overlap, prior_idx = overlaps.max(1)
    anchor_overlap, anchor_idx = overlaps.max(0)
    gt_overlap, gt_idx = map_to_ground_truth(overlaps)
    gt_clas = clas0[gt_idx]
    thresh = 0.5
    pos = gt_overlap > thresh
    pos_idx = torch.nonzero(pos)[:, 0]
    gt_clas[~pos] = len(id2cat)
    gt_bbox = bbox0[gt_idx]
    loc_loss = ((a_ic[pos_idx] - gt_bbox[pos_idx]).abs()).mean()
    clas_loss = F.cross_entropy(b_clasi, gt_clas)
    out["testing0"] = {
        "prior_overlap": prior_overlap.tolist(), "prior_idx": prior_idx.tolist(),
        "anchor_overlap": anchor_overlap.tolist(), "anchor_idx": anchor_idx.tolist(),
        "gt_overlap": gt_overlap.tolist(), "gt_idx": gt_idx.tolist(), "gt_clas": gt_clas.tolist(),
        "pos_idx": pos_idx.tolist(), "loc_loss": loc_loss.item(), "cross_entropy": clas_loss.item(),
        "bce_clas_loss": BCE_Loss(20)(b_clasi, gt_clas).item(),
    }
    return out


def short(v):
    """Floats with 9 significant digits (exact for float32 inputs, plenty for outputs)."""
    if isinstance(v, float):
        return float(f"{v:.9g}")
    if isinstance(v, list):
        return [short(x) for x in v]
    if isinstance(v, dict):
        return {k: short(x) for k, x in v.items()}
    return v


def main():
    g = torch.Generator().manual_seed(9)
    doc = {"generator": "tests/golden/gen_ssd.py", "torch": torch.__version__}
    doc["anchors_4x4"] = anchors_doc(anchors_4x4())
    doc["anchors_189"] = anchors_doc(anchors_189())

    a, b = rand_boxes(g, 5), rand_boxes(g, 7)
    doc["jaccard"] = {"a": a.tolist(), "b": b.tolist(), "iou": jaccard(a, b).tolist()}

    use_anchors(anchors_189())
    actn = (torch.randn(189, 4, generator=g) * 2).float()
    doc["actn_to_bb"] = {"actn": actn.tolist(), "bb": actn_to_bb(actn, anchors).tolist()}

    # map_to_ground_truth on 16 anchors: random overlaps, then gts 0 and 2 sharing a best anchor
    ov = torch.rand(3, 16, generator=g) * 0.8
    ov[0, 5] = 0.95
    ov[2, 5] = 0.9  # gt 2's best is also anchor 5: the lesson gives it to gt 2, gt 0 is lost
    go, gi = map_to_ground_truth(ov.clone())
    doc["map_to_ground_truth"] = {"overlaps": ov.tolist(), "gt_overlap": go.tolist(), "gt_idx": gi.tolist()}

    doc["class_loss"] = [class_loss_case(g, 16, 1), class_loss_case(g, 16, 2)]

    x = torch.arange(2 * 6 * 2 * 3, dtype=torch.float32).view(2, 6, 2, 3)
    doc["flatten_conv"] = {"x_shape": list(x.shape), "k": 2, "out": flatten_conv(x, 2).tolist()}

    doc["ssd"] = ssd_case(g)

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ssd.json")
    with open(path, "w") as f:
        json.dump(short(doc), f)
        f.write("\n")
    s = doc["ssd"]
    print(f"wrote {path} ({os.path.getsize(path)} bytes): ssd bce {s['bce']['total']:.6f}, focal {s['focal']['total']:.6f}")


if __name__ == "__main__":
    main()
