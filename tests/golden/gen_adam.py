"""Golden weights after torch.optim.Adam steps, for tests/it/golden_torch.rs.

Model nn.Linear(5, 3) with fixed weights (seeded), fixed input x [4, 5] and target [4, 3];
torch.optim.Adam(model.parameters(), lr) with PyTorch's defaults (betas (0.9, 0.999),
eps 1e-8, weight_decay 0, amsgrad False). Each step: zero_grad, loss.backward(), step().
Cases: MSE loss at lr 1e-2; L1 loss at lr 1e-2; MSE with the lr changed before every step
(as fastai's schedulers and fastdet's learner do: param_group['lr'] = ...).
Records the weight and bias after steps 1, 2 and 3, float32.

Run with the project's venv python:  python tests/golden/gen_adam.py
It writes tests/golden/adam.json next to this file.
"""
import json
import os

import torch
import torch.nn.functional as F
from torch import nn


def case(name, loss_fn, lrs):
    g = torch.Generator().manual_seed(0)
    m = nn.Linear(5, 3)
    with torch.no_grad():
        m.weight.copy_(torch.randn(3, 5, generator=g) * 0.5)
        m.bias.copy_(torch.randn(3, generator=g) * 0.1)
    x = torch.randn(4, 5, generator=g)
    y = torch.randn(4, 3, generator=g)
    w0, b0 = m.weight.detach().clone(), m.bias.detach().clone()
    opt = torch.optim.Adam(m.parameters(), lr=lrs[0])
    steps = []
    for lr in lrs:
        for pg in opt.param_groups:
            pg["lr"] = lr
        opt.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()
        steps.append({"lr": lr, "loss": loss.item(), "weight": m.weight.detach().tolist(), "bias": m.bias.detach().tolist()})
    return {"name": name, "loss": loss_fn.__name__, "weight0": w0.tolist(), "bias0": b0.tolist(), "x": x.tolist(), "y": y.tolist(), "steps": steps}


def main():
    d = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults
    doc = {
        "generator": "tests/golden/gen_adam.py",
        "torch": torch.__version__,
        "defaults": {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if isinstance(v, (int, float, bool, tuple))},
        "cases": [
            case("mse_lr1e-2", F.mse_loss, [1e-2] * 3),
            case("l1_lr1e-2", F.l1_loss, [1e-2] * 3),
            case("mse_lr_changes", F.mse_loss, [1e-2, 5e-3, 2e-2]),
        ],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adam.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {path}; defaults {doc['defaults']}")


if __name__ == "__main__":
    main()
