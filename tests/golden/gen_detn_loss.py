"""Golden value and gradient of lesson 8's detn_loss, for tests/it/golden_torch.rs.

    def detn_loss(input, target, sz=224):      # pascal.ipynb, lesson 8
        bb_t, c_t = target
        bb_i, c_i = input[:, :4], input[:, 4:]
        bb_i = F.sigmoid(bb_i) * sz
        return F.l1_loss(bb_i, bb_t) + F.cross_entropy(c_i, c_t) * 20

Fixed float32 inputs from a seeded generator: out [4, 24] (logits, 4 box + 20 classes),
bbox [4, 4] in pixels (y1 x1 y2 x2, 0..224), class [4]; the loss and d loss / d out.
Run with the project's venv python:  python tests/golden/gen_detn_loss.py
It writes tests/golden/detn_loss.json next to this file.
"""
import json
import os

import torch
import torch.nn.functional as F

SZ = 224


def detn_loss(out, bbox, cls, sz=SZ):
    bb_i, c_i = out[:, :4], out[:, 4:]
    bb_i = torch.sigmoid(bb_i) * sz
    return F.l1_loss(bb_i, bbox) + F.cross_entropy(c_i, cls) * 20


def case(seed, b=4, n_cls=20):
    g = torch.Generator().manual_seed(seed)
    out = (torch.randn(b, 4 + n_cls, generator=g) * 2.0).float().requires_grad_()
    corners = torch.rand(b, 2, 2, generator=g) * SZ
    lo, hi = corners.min(1).values, corners.max(1).values  # [b, 2] (y, x)
    bbox = torch.stack([lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]], 1).round().float()
    cls = torch.randint(0, n_cls, (b,), generator=g)
    loss = detn_loss(out, bbox, cls)
    loss.backward()
    return {
        "seed": seed,
        "sz": SZ,
        "class_weight": 20.0,
        "out": out.detach().tolist(),
        "bbox": bbox.tolist(),
        "class": cls.tolist(),
        "loss": loss.item(),
        "l1": F.l1_loss(torch.sigmoid(out[:, :4].detach()) * SZ, bbox).item(),
        "ce": F.cross_entropy(out[:, 4:].detach(), cls).item(),
        "grad": out.grad.tolist(),
    }


def main():
    doc = {
        "generator": "tests/golden/gen_detn_loss.py",
        "torch": torch.__version__,
        "cases": [case(s) for s in (0, 1, 2)],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detn_loss.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: losses {[c['loss'] for c in doc['cases']]}")


if __name__ == "__main__":
    main()
