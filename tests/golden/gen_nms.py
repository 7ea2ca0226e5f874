"""Golden NMS cases for tests/it/nms.rs: what torchvision.ops.nms / batched_nms keep.

    source scripts/env.sh && python tests/golden/gen_nms.py   # writes tests/golden/nms.json

Boxes are (x1, y1, x2, y2) float32, seeded; every coordinate and score is written as the exact
decimal of its float32 (float(x)), so Rust reads back the same bits. Scores have no ties except
in the "ties" case (torchvision 0.28's CPU kernel sorts stably, ties by index).
"""
import json
import os

import torch
import torchvision

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nms.json")


def rand_boxes(g, n, extent, max_side, quant=None):
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * max_side
    b = torch.cat([xy, xy + wh], 1)
    if quant:
        b = torch.round(b * quant) / quant
    return b.float()


def unique_scores(g, n):
    s = torch.randperm(max(n, 1) * 7, generator=g)[:n].float() / (max(n, 1) * 7)
    return s.float()


def fl(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def main():
    g = torch.Generator().manual_seed(20180326)
    cases = []
    # Full float32 coordinates up to 200 boxes; 1/16-pixel coordinates above (shorter JSON).
    for n, extent, side, quant in [(0, 100, 50, None), (1, 100, 50, None), (7, 50, 40, None), (50, 100, 50, None),
                                   (200, 300, 80, None), (1000, 1000, 120, 16)]:
        b = rand_boxes(g, n, extent, side, quant)
        s = unique_scores(g, n)
        keeps = [{"iou": thr, "keep": torchvision.ops.nms(b, s, thr).tolist()} for thr in [0.0, 0.3, 0.5, 0.7, 1.0]]
        cases.append({"name": f"random n={n}", "boxes": fl(b), "scores": fl(s), "keeps": keeps})
    # Dense: many near-duplicates of a few objects (what a detector outputs).
    base = rand_boxes(g, 8, 200, 80)
    b = (base.repeat(60, 1) + torch.randn(480, 4, generator=g) * 4).float()
    b = torch.round(b * 16) / 16
    s = unique_scores(g, 480)
    cases.append({"name": "clustered n=480", "boxes": fl(b), "scores": fl(s),
                  "keeps": [{"iou": thr, "keep": torchvision.ops.nms(b, s, thr).tolist()} for thr in [0.4, 0.5]]})
    # Ties: identical scores (and identical boxes), degenerate and border-touching boxes.
    b = rand_boxes(g, 300, 100, 60, quant=4)
    b[:20] = b[0]                       # identical boxes
    b[20:30, 2] = b[20:30, 0]           # zero width
    b[30:35, 0] = 0.0                   # touching the border
    s = torch.round(torch.rand(300, generator=g) * 10) / 10   # many ties
    s = s.float()
    cases.append({"name": "ties n=300", "boxes": fl(b), "scores": fl(s),
                  "keeps": [{"iou": thr, "keep": torchvision.ops.nms(b, s, thr).tolist()} for thr in [0.3, 0.5]]})

    batched = []
    # Above 1000 boxes torchvision loops per class (_batched_nms_vanilla): exact on any input.
    b = rand_boxes(g, 1500, 400, 100, 16)
    s = unique_scores(g, 1500)
    c = torch.randint(0, 6, (1500,), generator=g)
    batched.append({"name": "vanilla n=1500", "boxes": fl(b), "scores": fl(s), "classes": c.tolist(), "iou": 0.5,
                    "keep": torchvision.ops.batched_nms(b, s, c, 0.5).tolist()})
    # Below, it offsets boxes per class; on quarter-pixel coordinates the offsets are exact.
    b = rand_boxes(g, 400, 200, 80, quant=4)
    s = unique_scores(g, 400)
    c = torch.randint(0, 4, (400,), generator=g)
    for thr in [0.3, 0.6]:
        batched.append({"name": f"offsets n=400 thr={thr}", "boxes": fl(b), "scores": fl(s), "classes": c.tolist(),
                        "iou": thr, "keep": torchvision.ops.batched_nms(b, s, c, thr).tolist()})

    # The lesson's jaccard on the first boxes of a case, for the tensor version.
    a = rand_boxes(g, 6, 1, 0.6)
    bb = rand_boxes(g, 5, 1, 0.6)
    inter_max = torch.min(a[:, None, 2:], bb[None, :, 2:])
    inter_min = torch.max(a[:, None, :2], bb[None, :, :2])
    inter = torch.clamp(inter_max - inter_min, min=0)
    inter = inter[:, :, 0] * inter[:, :, 1]
    sz = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    jac = inter / (sz(a).unsqueeze(1) + sz(bb).unsqueeze(0) - inter)
    out = {"torch": torch.__version__, "torchvision": torchvision.__version__, "nms": cases, "batched": batched,
           "jaccard": {"a": fl(a), "b": fl(bb), "iou": fl(jac)}}
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}: {len(cases)} nms cases, {len(batched)} batched cases")


if __name__ == "__main__":
    main()
