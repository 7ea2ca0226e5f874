"""PyTorch doing fastdet's training step (examples/train_step.rs) on the same machine: ResNet34
body (torchvision, children[:-2]) + the lesson's detection head, batch --bs at --sz, train mode,
forward (under torch.autocast with --amp) + detn_loss in fp32 + backward (through
torch.amp.GradScaler with --amp) + Adam (lr 1e-4). Random weights and one random batch, seeded;
cuDNN benchmark mode on, as fastdet sets it. The clock starts after --warmup steps and stops when
the last loss is read back. Prints `RESULT {json}`.

With --head ssd: lesson 9's SSD (ResNet34 + SSD_MultiHead, 189 anchors, lesson_ssd.py) and the
notebook's ssd_loss as written there (a Python loop over the images, map_to_ground_truth), on
padded targets of 1-4 random boxes an image.

    python train_step_peer.py [--bs 64] [--sz 224] [--warmup 5] [--steps 20] [--amp] [--head ssd] [--device cuda|cpu]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--bs", type=int, default=64)
p.add_argument("--sz", type=int, default=224)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--amp", action="store_true")
p.add_argument("--head", choices=["detection", "ssd"], default="detection")
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
a = p.parse_args()
dev = torch.device(a.device)
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
m = torchvision.models.resnet34(weights=None)
body = nn.Sequential(*list(m.children())[:-2])
side = a.sz // 32
head = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512 * side * side, 256), nn.ReLU(),
                     nn.BatchNorm1d(256), nn.Dropout(0.5), nn.Linear(256, 4 + 20))
model = nn.Sequential(body, head).to(dev).train()
x = torch.randn(a.bs, 3, a.sz, a.sz, device=dev)
bbox = (torch.rand(a.bs, 4, device=dev) * a.sz).sort(1).values
clas = torch.randint(20, (a.bs,), device=dev)
if a.head == "ssd":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import lesson_ssd
    torch.manual_seed(0)
    model = lesson_ssd.SSD(drop=0.4).to(dev).train()
    lesson = lesson_ssd.Lesson(dev, a.sz)
    ssd_bbox, ssd_clas, _ = lesson_ssd.random_targets(a.bs, a.sz, torch.Generator().manual_seed(1), device=dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
scaler = torch.amp.GradScaler(dev.type, enabled=a.amp)


def detn_loss(out):
    bb = torch.sigmoid(out[:, :4]) * a.sz
    return F.l1_loss(bb, bbox) + 20 * F.cross_entropy(out[:, 4:], clas)


def step():
    opt.zero_grad(set_to_none=False)
    with torch.autocast(dev.type, dtype=torch.float16 if dev.type == "cuda" else torch.bfloat16, enabled=a.amp):
        out = model(x)
    if a.head == "ssd":
        loss = lesson.ssd_loss([o.float() for o in out], [ssd_bbox, ssd_clas])
    else:
        loss = detn_loss(out.float())
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


first = step().item()
for _ in range(1, max(a.warmup, 1)):
    step()
step().item()
t = time.perf_counter()
for _ in range(a.steps):
    last = step()
last = last.item()
secs = time.perf_counter() - t
mem = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
print("RESULT " + json.dumps({"framework": f"pytorch {torch.__version__}", "head": a.head, "device": str(dev), "amp": a.amp, "bs": a.bs,
                              "sz": a.sz, "steps": a.steps, "secs": secs, "img_per_s": a.bs * a.steps / secs,
                              "ms_per_step": secs * 1000 / a.steps, "loss_first": first, "loss_last": last,
                              "max_memory_allocated_mib": mem}), flush=True)
