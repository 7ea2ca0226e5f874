"""Golden ResNet backbone features from torchvision, for tests/it/golden_torch.rs.

A torchvision ResNet (resnet34 by default; --arch resnet18 / resnet50) with torch.manual_seed(0)
random init (weights=None); a few train-mode forwards on random data make the BatchNorm running
statistics non-trivial, and every BatchNorm's affine weight/bias is randomised too (they start
at 1/0). Then eval mode, and it writes into OUT_DIR (not checked in: ResNet34 is ~85 MB):

    <arch>.pth            torch.save(model.state_dict())   (torchvision names, fc.* included;
                          an OrderedDict, as torchvision's downloads)
    <arch>_dict.pth       torch.save(dict(model.state_dict())), the same as a plain dict
                          (only with --plain-dict)
    <arch>_x.npy          the input, float32 [2, 3, 128, 128] from a seeded generator
    <arch>_features.npy   nn.Sequential(*list(m.children())[:-2])(x) in eval mode, float32

Run with the project's venv python:
    python tests/golden/gen_resnet34.py OUT_DIR [--arch resnet34] [--size 128] [--batch 2] [--plain-dict]
The Rust test (tests/it/golden_torch.rs) runs it into a temporary directory at test time.
"""
import argparse
import os

import numpy as np
import torch
import torchvision
from torch import nn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--arch", default="resnet34", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--plain-dict", action="store_true", help="also write <arch>_dict.pth")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    torch.manual_seed(0)
    m = getattr(torchvision.models, a.arch)(weights=None)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0.0, 0.1, generator=g)
        m.train()
        for _ in range(3):  # BatchNorm running_mean / running_var away from 0 / 1
            m(torch.randn(4, 3, 64, 64, generator=g) * 1.5 + 0.2)
    m.eval()
    body = nn.Sequential(*list(m.children())[:-2])
    x = torch.randn(a.batch, 3, a.size, a.size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = body(x)
    torch.save(m.state_dict(), os.path.join(a.out_dir, f"{a.arch}.pth"))
    if a.plain_dict:
        torch.save(dict(m.state_dict()), os.path.join(a.out_dir, f"{a.arch}_dict.pth"))
    np.save(os.path.join(a.out_dir, f"{a.arch}_x.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(a.out_dir, f"{a.arch}_features.npy"), y.numpy().astype(np.float32))
    print(f"{a.arch}: features {tuple(y.shape)}, |y| max {y.abs().max().item():.4g}, mean {y.mean().item():.4g} -> {a.out_dir}")


if __name__ == "__main__":
    main()
