"""Golden steps of PyTorch's gradient scaler, for tests/it/amp.rs.

`torch.amp.GradScaler("cpu", init_scale=1024, growth_factor=2, backoff_factor=0.5,
growth_interval=3)` with plain SGD (lr 0.1) on two parameters, over 14 steps whose gradients
(before scaling) hold infs and NaNs at fixed steps. Each step builds the scaled loss the way a
training loop does, `scaler.scale(loss).backward()` with loss = sum(p1 * g1) + sum(p2 * g2), so
the gradients reaching the scaler are `g * scale`; then `scaler.step(opt)` and
`scaler.update()`. Recorded: the scale after each update, whether the weights changed, the
weights after each step, and the growth tracker.

Run with the project's venv python:  python tests/golden/gen_amp.py
It writes tests/golden/amp.json next to this file.
"""
import json
import math
import os

import torch

torch.manual_seed(0)
p1 = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.25]))
p2 = torch.nn.Parameter(torch.tensor([[1.0, -0.5], [0.75, 3.0]]))
opt = torch.optim.SGD([p1, p2], lr=0.1)
scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)

bad = {2: ("p1", 1, math.inf), 6: ("p2", 3, math.nan), 7: ("p1", 0, -math.inf), 12: ("p2", 0, math.inf)}
steps = []
for t in range(14):
    g1 = torch.tensor([0.1 * (t + 1), -0.2, 0.05 * t, 0.3])
    g2 = torch.tensor([[0.01 * t, 0.2], [-0.1, 0.02 * (t % 4)]])
    if t in bad:
        which, i, v = bad[t]
        (g1 if which == "p1" else g2).view(-1)[i] = v
    before = [p1.detach().clone(), p2.detach().clone()]
    opt.zero_grad()
    loss = (p1 * g1).sum() + (p2 * g2).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    changed = not (torch.equal(before[0], p1.detach()) and torch.equal(before[1], p2.detach()))
    steps.append({
        "g1_raw": [repr(x) for x in g1.tolist()],
        "g2_raw": [repr(x) for x in g2.view(-1).tolist()],
        "scale": scaler.get_scale(),
        "growth_tracker": int(scaler._growth_tracker.item()),
        "stepped": changed,
        "p1": p1.detach().tolist(),
        "p2": p2.detach().view(-1).tolist(),
    })

out = {"torch": torch.__version__, "lr": 0.1, "init_scale": 1024.0, "growth_interval": 3,
       "p1_init": [0.5, -1.0, 2.0, 0.25], "p2_init": [1.0, -0.5, 0.75, 3.0], "steps": steps}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "amp.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print(f"wrote {path}: scales {[s['scale'] for s in steps]}, stepped {[s['stepped'] for s in steps]}")
