"""The reference for tests/it/anchor_fit.rs: every box's best IoU with lesson 9's anchors.

Reads JSON from stdin: {"boxes": [[y1, x1, y2, x2], ...] (0..1), "configs": [{"grids": [...],
"zooms": [...], "ratios": [[i, j], ...]}, ...]}. For each config, builds the anchors with the
lesson's numpy code (pascal-multi.ipynb: anc_grids, anc_zooms, anc_ratios -> anchor_cnr), computes
the IoU matrix with torchvision.ops.box_iou in float32 (boxes as (x1, y1, x2, y2)), and writes a
list of {"best_iou": [...], "best_anchor": [...], "n_anchors": A}, one per config, to stdout.
"""
import json
import sys

import numpy as np
import torch
from torchvision.ops import box_iou

spec = json.load(sys.stdin)
boxes = torch.tensor(spec["boxes"], dtype=torch.float32).view(-1, 4)


def best_iou(cfg):
    anc_grids, anc_zooms, anc_ratios = cfg["grids"], cfg["zooms"], [tuple(r) for r in cfg["ratios"]]
    # The lesson's cells, verbatim but for the names of the inputs.
    anchor_scales = [(anz * i, anz * j) for anz in anc_zooms for (i, j) in anc_ratios]
    k = len(anchor_scales)
    anc_offsets = [1 / (o * 2) for o in anc_grids]
    anc_x = np.concatenate([np.repeat(np.linspace(ao, 1 - ao, ag), ag) for ao, ag in zip(anc_offsets, anc_grids)])
    anc_y = np.concatenate([np.tile(np.linspace(ao, 1 - ao, ag), ag) for ao, ag in zip(anc_offsets, anc_grids)])
    anc_ctrs = np.repeat(np.stack([anc_x, anc_y], axis=1), k, axis=0)
    anc_sizes = np.concatenate(
        [np.array([[o / ag, p / ag] for i in range(ag * ag) for o, p in anchor_scales]) for ag in anc_grids]
    )
    anchors = torch.tensor(np.concatenate([anc_ctrs, anc_sizes], axis=1), dtype=torch.float32)
    ctr, hw = anchors[:, :2], anchors[:, 2:]
    anchor_cnr = torch.cat([ctr - hw / 2, ctr + hw / 2], dim=1)  # hw2corners: (y1, x1, y2, x2)
    xyxy = lambda b: b[:, [1, 0, 3, 2]]
    iou = box_iou(xyxy(boxes), xyxy(anchor_cnr))  # [N, A]
    best, idx = iou.max(dim=1)
    return {"best_iou": best.tolist(), "best_anchor": idx.tolist(), "n_anchors": len(anchor_cnr)}


json.dump([best_iou(cfg) for cfg in spec["configs"]], sys.stdout)
