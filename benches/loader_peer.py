"""`make bench-aug`, second part: the data loader end to end, fastdet against a PyTorch
`DataLoader` with albumentations.

Both deliver shuffled batches of 64 normalised float images [64, 3, 224, 224] with their boxes,
augmented as the lesson trains (flip 0.5, rotate 3 degrees 0.5, brightness/contrast 0.05,
squash to 224), from the sample's 65 JPEG photos repeated 8 times (520 images), using the
machine's cores:
- fastdet: `cargo bench --bench loader` (benches/loader.rs): `DataLoader` on a rayon pool of
  all cores; its first epoch reads and decodes every file, the second takes the scaled images
  from its cache;
- PyTorch: `torch.utils.data.DataLoader(num_workers=2, persistent_workers=True)`, each worker
  reading the file with cv2.imread and running albumentations (resized first, its faster order),
  one thread per worker; the default collate for the images. It has no cache: both epochs decode.
Each side runs two epochs; the goal is fastdet's first epoch (from JPEG, no cache) at least 2x
PyTorch's faster epoch; the cached second epoch is printed beside it.

Run (from the repository root): source scripts/env.sh && python benches/loader_peer.py [--skip-rust]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import albumentations as A
import cv2
import numpy as np
import torch

from sample_boxes import IMAGE_DIR, ROOT, sample_images
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def records(copies):
    return [(os.path.join(IMAGE_DIR, im["file_name"]), [x for x, _ in b], [c for _, c in b]) for im, b in sample_images()] * copies


class Photos(torch.utils.data.Dataset):
    def __init__(self, recs):
        self.recs = recs
        self.tfm = A.Compose([
            A.Resize(224, 224, interpolation=cv2.INTER_LINEAR),
            A.HorizontalFlip(p=0.5),
            A.Rotate(limit=3, p=0.5, border_mode=cv2.BORDER_REFLECT, rotate_method="largest_box"),
            A.RandomBrightnessContrast(brightness_limit=0.05, contrast_limit=0.05, p=1.0),
            A.Normalize(mean=MEAN, std=STD),
            A.ToTensorV2(),
        ], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]))

    def __len__(self):
        return len(self.recs)

    def __getitem__(self, i):
        path, boxes, labels = self.recs[i]
        img = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out = self.tfm(image=img, bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), labels=labels)
        return out["image"].contiguous(), torch.as_tensor(np.array(out["bboxes"], dtype=np.float32).reshape(-1, 4))


def collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def init_worker(_):
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def pytorch_epochs(copies, bs, workers):
    dl = torch.utils.data.DataLoader(Photos(records(copies)), batch_size=bs, shuffle=True, num_workers=workers,
                                     collate_fn=collate, worker_init_fn=init_worker, persistent_workers=True,
                                     generator=torch.Generator().manual_seed(0))
    out = []
    for epoch in range(2):
        t = time.perf_counter()
        n = 0
        for x, _ in dl:
            assert tuple(x.shape[1:]) == (3, 224, 224)
            n += x.shape[0]
        secs = time.perf_counter() - t
        print(f"  PyTorch DataLoader ({workers} workers), epoch {epoch}: {n} images in {secs:.2f} s, {n / secs:.0f} img/s",
              file=sys.stderr, flush=True)
        out.append({"epoch": epoch, "images": n, "secs": secs, "img_s": n / secs})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-rust", action="store_true")
    args = ap.parse_args()
    print(f"\nbench-loader: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{65 * args.copies} images, batches of {args.bs} at 224, two epochs each", flush=True)
    rows = []
    if not args.skip_rust:
        cmd = f"source scripts/env.sh && cargo bench --quiet --bench loader -- --copies {args.copies} --bs {args.bs}"
        res = subprocess.run(["bash", "-c", cmd], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        if res.returncode != 0:
            sys.exit(f"cargo bench --bench loader failed (exit {res.returncode})")
        fd = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append((f"fastdet ({fd['threads']} threads)", fd["epochs"]))
    rows.append((f"PyTorch + albumentations ({args.workers} workers)", pytorch_epochs(args.copies, args.bs, args.workers)))
    print(f"\n{'loader':40s} | {'epoch 0 img/s':>13s} | {'epoch 1 img/s':>13s}")
    print("-" * 73)
    for name, ep in rows:
        print(f"{name:40s} | {ep[0]['img_s']:13.0f} | {ep[1]['img_s']:13.0f}")
    if not args.skip_rust:
        fd_first, fd_cached = rows[0][1][0]["img_s"], rows[0][1][1]["img_s"]
        pt = max(e["img_s"] for e in rows[1][1])
        print(f"\ngoal (fastdet's loader >= 2x PyTorch's DataLoader with albumentations, from JPEG): "
              f"{fd_first / pt:.2f}x the faster PyTorch epoch: {'met' if fd_first >= 2 * pt else 'NOT met'}; "
              f"from fastdet's cache of scaled images (second epoch) {fd_cached / pt:.2f}x")
    os.makedirs(os.path.join(ROOT, "out"), exist_ok=True)
    with open(os.path.join(ROOT, "out", "bench_loader.json"), "w") as f:
        json.dump({name: ep for name, ep in rows}, f, indent=1)


if __name__ == "__main__":
    main()
