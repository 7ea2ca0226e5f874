"""`make bench-train`: one training step of lesson 8's detector and of lesson 9's SSD, fastdet
against PyTorch.

SSD (--model ssd): ResNet34 body + `SSD_MultiHead(k=9, -4.)` (189 anchors), batch 8 at 224, each
image with 1-4 random boxes padded as the lesson's loader pads them; a step is forward + the
lesson's `ssd_loss` as written in pascal-multi.ipynb (a Python loop over the images with
`map_to_ground_truth`: scripts/gpu/lesson_ssd.py) + backward + Adam, against fastdet's learner
step (`Loss::Ssd`: the whole batch matched at once on the device). Same weights (PyTorch's
initialisation, written as weights.pth under fastdet's names), same batch, dropout 0 (--p).

Model: ResNet34 body (torchvision, children[:-2]) + the lesson's detection head
(Flatten, ReLU, Dropout, Linear(25088, 256), ReLU, BatchNorm1d(256), Dropout, Linear(256, 24)),
batch 8 at 224x224, train mode, every layer trainable; a step is forward + detn_loss
(L1(sigmoid(out[:, :4]) * 224, bbox) + 20 * CE(out[:, 4:], class)) + backward + Adam (defaults,
lr 1e-4). Same weights (torchvision's random init with torch.manual_seed(0), written once as
weights.pth under fastdet's names) and the same random batch (.npy files) on both sides.

Dropout is 0 in both heads (--p to change it): with dropout, the two frameworks draw different
masks and the losses could not be compared; its cost is negligible next to the convolutions. With
p = 0 and train-mode BatchNorm, the step is deterministic, so the loss of step 0 (before any
update) must agree to float rounding, and later steps stay close.

Both run on the same number of intra-op threads (torch.set_num_threads / tch::set_num_threads,
--threads, default 2), in --rounds (3) alternating rounds (PyTorch, fastdet, PyTorch, ...), each
from the same initial weights: --warmup steps (2) then --steps timed steps (5). The machine may be
shared, so the rounds spread other processes' load over both; the table shows the median and the
minimum ms/step over all timed steps, and the forward / backward / Adam split is in
out/bench_train.json. fastdet runs as `cargo bench --bench train` (release).

Run (from the repository root): source scripts/env.sh && python benches/train_peer.py
Options: --model detector|ssd|both (both), --threads N, --steps N, --warmup N, --rounds N (3), --p P, --skip-rust,
--keep DIR. Results also go to out/bench_train.json. The last line is the verdict on the SSD goal: fastdet's
SSD step at least 1.0x PyTorch's images/s on this CPU.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "gpu"))
import lesson_ssd  # noqa: E402  (the lesson's SSD and ssd_loss, shared with the GPU bundle's peer)
SZ, BS, N_CLASSES, LR = 224, 8, 20, 1e-4
# PyTorch head index -> fastdet's variable prefix (Head::new).
HEAD_NAMES = {"3": "head.lin1", "5": "head.bn", "7": "head.lin2"}


def build(p):
    torch.manual_seed(0)
    m = torchvision.models.resnet34(weights=None)
    body = nn.Sequential(*list(m.children())[:-2])
    head = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Dropout(p), nn.Linear(512 * 7 * 7, 256), nn.ReLU(),
                         nn.BatchNorm1d(256), nn.Dropout(p), nn.Linear(256, 4 + N_CLASSES))
    # fastai's apply_init(head, kaiming_normal), as fastdet's head: weights Kaiming-normal, biases 0.
    for layer in (head[3], head[7]):
        nn.init.kaiming_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    return m, nn.Sequential(body, head)


def fastdet_state_dict(m, model):
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    for k, v in model[1].state_dict().items():
        idx, rest = k.split(".", 1)
        if rest == "num_batches_tracked":
            continue
        sd[f"{HEAD_NAMES[idx]}.{rest}"] = v
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def detn_loss(out, bbox, cls):
    return F.l1_loss(torch.sigmoid(out[:, :4]) * SZ, bbox) + F.cross_entropy(out[:, 4:], cls) * 20


def run_torch(model, x, bbox, cls, warmup, steps, loss_fn=None):
    loss_fn = loss_fn or (lambda out: detn_loss(out, bbox, cls))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    losses, secs, phases = [], [], []
    for step in range(warmup + steps):
        t = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x))
        t_fwd = time.perf_counter() - t
        loss.backward()
        t_bwd = time.perf_counter() - t
        opt.step()
        value = loss.item()
        dt = time.perf_counter() - t
        phases.append([t_fwd, t_bwd - t_fwd, dt - t_bwd])
        losses.append(value)
        if step >= warmup:
            secs.append(dt)
        f, b, o = (v * 1e3 for v in phases[-1])
        print(f"pytorch step {step}: loss {value:.6f}, {dt * 1e3:.1f} ms (forward {f:.0f}, backward {b:.0f}, Adam {o:.0f})",
              file=sys.stderr)
    return {"framework": "pytorch", "losses": losses, "secs": secs, "phases_s": phases}


def run_fastdet(d, args, model="detector"):
    cmd = (f"source scripts/env.sh && cargo bench --quiet --bench train -- --dir {d} --threads {args.threads} "
           f"--warmup {args.warmup} --steps {args.steps} --lr {LR} --model {model}")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    res = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"cargo bench --bench train failed (exit {res.returncode})")
    for line in res.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit("cargo bench --bench train printed no RESULT line")


def pooled(per_round, warmup):
    rows = {}
    for results in per_round:
        for res in results:
            row = rows.setdefault(res["framework"], {"framework": res["framework"], "losses": res["losses"], "secs": [],
                                                     "phases_s": []})
            row["secs"] += res["secs"]
            row["phases_s"] += res["phases_s"][warmup:]
    for r in rows.values():
        r["median_ms"] = statistics.median(r["secs"]) * 1e3
        r["min_ms"] = min(r["secs"]) * 1e3
        r["img_per_s"] = BS / (r["median_ms"] / 1e3)
    return rows


def table(title, rows, args):
    print()
    print(title)
    last = f"loss step {args.warmup + args.steps - 1}"
    print(f"{'framework':<10} {'ms/step (median)':>17} {'min ms':>8} {'images/s':>9} {'loss step 0':>14} {last:>14}")
    for name, r in rows.items():
        print(f"{name:<10} {r['median_ms']:>17.1f} {r['min_ms']:>8.1f} {r['img_per_s']:>9.2f} {r['losses'][0]:>14.6f} "
              f"{r['losses'][-1]:>14.6f}")
    if "fastdet" not in rows:
        return {}
    f, t = rows["fastdet"], rows["pytorch"]
    ratio = f["median_ms"] / t["median_ms"]
    ratio_min = f["min_ms"] / t["min_ms"]
    speed = t["median_ms"] / f["median_ms"]
    d0 = f["losses"][0] - t["losses"][0]
    dl = f["losses"][-1] - t["losses"][-1]
    print(f"time ratio fastdet/PyTorch: {ratio:.3f} (medians), {ratio_min:.3f} (minimums); "
          f"images/s fastdet/PyTorch: {speed:.2f}x")
    print(f"loss difference fastdet - PyTorch: step 0 {d0:+.3e} (relative {d0 / t['losses'][0]:+.2e}), "
          f"step {args.warmup + args.steps - 1} {dl:+.3e} (relative {dl / t['losses'][-1]:+.2e})")
    return {"ratio": ratio, "ratio_min": ratio_min, "speed": speed, "loss_diff_step0": d0, "loss_diff_last": dl}


def bench_detector(args):
    m, model = build(args.p)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BS, 3, SZ, SZ, generator=g)
    corners = torch.rand(BS, 2, 2, generator=g) * SZ
    lo, hi = corners.min(1).values, corners.max(1).values
    bbox = torch.stack([lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]], 1).round()
    cls = torch.randint(0, N_CLASSES, (BS,), generator=g)

    per_round = []
    with tempfile.TemporaryDirectory(prefix="fastdet-bench-train-") as tmp:
        d = args.keep or tmp
        os.makedirs(d, exist_ok=True)
        # Written before PyTorch trains: both start from the same weights.
        torch.save(fastdet_state_dict(m, model), os.path.join(d, "weights.pth"))
        np.save(os.path.join(d, "x.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(d, "bbox.npy"), bbox.numpy().astype(np.float32))
        np.save(os.path.join(d, "class.npy"), cls.numpy().astype(np.int64))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"p": args.p}, f)
        for r in range(args.rounds):
            # Alternating rounds, each from the same initial weights: on a shared machine, load
            # from other processes then hits both frameworks alike.
            print(f"detector round {r + 1}/{args.rounds}", file=sys.stderr)
            results = [run_torch(build(args.p)[1] if r else model, x, bbox, cls, args.warmup, args.steps)]
            if not args.skip_rust:
                results.append(run_fastdet(d, args))
            per_round.append(results)
    rows = pooled(per_round, args.warmup)
    summary = table(f"One training step: ResNet34 + detection head, batch {BS} at {SZ}x{SZ}, unfrozen, Adam lr {LR}, "
                    f"dropout {args.p}, {args.threads} threads; {args.rounds} alternating rounds of {args.warmup} "
                    f"warm-up + {args.steps} timed steps (torch {torch.__version__}, torchvision "
                    f"{torchvision.__version__})", rows, args)
    return {"results": list(rows.values()), **summary}


def build_ssd(p):
    torch.manual_seed(0)
    return lesson_ssd.SSD(drop=p)


def bench_ssd(args):
    model = build_ssd(args.p)
    lesson = lesson_ssd.Lesson("cpu", SZ)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(BS, 3, SZ, SZ, generator=g)
    bbox, clas, counts = lesson_ssd.random_targets(BS, SZ, g)

    def loss_fn(out):
        return lesson.ssd_loss(out, [bbox, clas])

    per_round = []
    with tempfile.TemporaryDirectory(prefix="fastdet-bench-ssd-") as tmp:
        d = os.path.join(args.keep, "ssd") if args.keep else tmp
        os.makedirs(d, exist_ok=True)
        torch.save(model.state_dict_for_fastdet(), os.path.join(d, "weights.pth"))
        np.save(os.path.join(d, "x.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(d, "bbox.npy"), bbox.numpy().astype(np.float32))
        np.save(os.path.join(d, "class.npy"), clas.numpy().astype(np.int64))
        np.save(os.path.join(d, "n_objects.npy"), counts.numpy().astype(np.int64))
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"p": args.p}, f)
        for r in range(args.rounds):
            print(f"ssd round {r + 1}/{args.rounds}", file=sys.stderr)
            results = [run_torch(build_ssd(args.p) if r else model, x, bbox, clas, args.warmup, args.steps, loss_fn)]
            if not args.skip_rust:
                results.append(run_fastdet(d, args, "ssd"))
            per_round.append(results)
    rows = pooled(per_round, args.warmup)
    summary = table(f"One training step of lesson 9's SSD: ResNet34 + SSD_MultiHead (189 anchors), batch {BS} at "
                    f"{SZ}x{SZ} with 1-4 objects an image, unfrozen, Adam lr {LR}, dropout {args.p}, {args.threads} "
                    f"threads; PyTorch runs the notebook's ssd_loss (a loop over images, map_to_ground_truth), "
                    f"fastdet its batched loss on the device; {args.rounds} alternating rounds of {args.warmup} "
                    f"warm-up + {args.steps} timed steps (torch {torch.__version__})", rows, args)
    return {"results": list(rows.values()), **summary}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["detector", "ssd", "both"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating PyTorch/fastdet rounds (timings pooled)")
    ap.add_argument("--p", type=float, default=0.0, help="dropout of both heads (0: comparable losses)")
    ap.add_argument("--skip-rust", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="write the weights and batch to DIR and keep them (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    doc = {"args": vars(args)}
    if args.model in ("detector", "both"):
        det = bench_detector(args)
        doc.update(det)  # the detector's results stay where they were
    if args.model in ("ssd", "both"):
        doc["ssd"] = bench_ssd(args)
        s = doc["ssd"]
        if "speed" in s:
            met = "met" if s["speed"] >= 1.0 else "NOT met"
            print(f"verdict: goal (fastdet's SSD step at least 1.0x PyTorch's images/s on this CPU, batch {BS} at "
                  f"{SZ}, {args.threads} threads) {met}: {s['speed']:.2f}x")
    os.makedirs(os.path.join(ROOT, "out"), exist_ok=True)
    with open(os.path.join(ROOT, "out", "bench_train.json"), "w") as fh:
        json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
