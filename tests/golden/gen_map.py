"""Golden mAP for tests/it/metrics.rs: pycocotools (COCO AP@[.5:.95]) and a faithful port of
voc_eval.py (VOC07 11-point and VOC2010+ area AP) on synthetic, seeded detections over the
bundled sample's ground truth (pascal_train2007.json + pascal_val2007.json).

    source scripts/env.sh && python tests/golden/gen_map.py   # writes tests/golden/map.json

The ground truth is the sample's, plus:
- an extra image with no objects (id EMPTY_ID, 640x480) that gets detections;
- some objects marked difficult (listed as [image_id, index of the object in its image]);
  voc_eval ignores them, and for COCO they are crowds (iscrowd=1: pycocotools overwrites an
  `ignore` flag with `iscrowd`, so that is how it ignores an object).
Detections: jittered copies of objects (a range of IoUs), duplicates, wrong classes, random
false positives, more than 100 of one class in one image, a zero-width box, boxes touching the
border, tied scores. Coordinates are multiples of 1/4 and scores float32 values, so Rust's f32
conversions are exact and both sides sort the same numbers.
"""
import contextlib
import io
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SAMPLE = os.path.join(ROOT, "data", "coco128-voc")
OUT = os.path.join(HERE, "map.json")
EMPTY_ID = 999999999


def load_gt():
    images, anns, cats = [], [], None
    for split in ["train", "val"]:
        with open(os.path.join(SAMPLE, f"pascal_{split}2007.json")) as f:
            d = json.load(f)
        images += d["images"]
        anns += d["annotations"]
        cats = d["categories"]
    images.append({"file_name": "empty.jpg", "height": 480, "width": 640, "id": EMPTY_ID})
    return images, anns, sorted(cats, key=lambda c: c["id"])


def make(seed=2018):
    rng = np.random.default_rng(seed)
    images, anns, cats = load_gt()
    n_cls = len(cats)
    by_img = {im["id"]: [] for im in images}
    for a in anns:
        by_img[a["image_id"]].append(a)
    difficult = []
    for im in images:
        for k, a in enumerate(by_img[im["id"]]):
            if rng.random() < 0.1:
                difficult.append([im["id"], k])
    dset = {tuple(x) for x in difficult}

    dets = []
    q = lambda v: float(np.round(v * 4) / 4)
    f32 = lambda v: float(np.float32(v))

    def add(img, cat, x, y, w, h, score):
        dets.append({"image_id": img, "category_id": int(cat), "bbox": [q(x), q(y), q(max(w, 0)), q(max(h, 0))],
                     "score": f32(score)})

    for im in images:
        W, H = im["width"], im["height"]
        for a in by_img[im["id"]]:
            x, y, w, h = a["bbox"]
            for rep in range(rng.choice([0, 1, 1, 1, 2, 3])):
                s = rng.uniform(0.05, 0.4) * max(w, h) ** 0.5 * (1 + rep)
                add(im["id"], a["category_id"], x + rng.normal(0, s), y + rng.normal(0, s),
                    w + rng.normal(0, s), h + rng.normal(0, s), rng.random())
            if rng.random() < 0.15:  # wrong class
                add(im["id"], rng.integers(1, n_cls + 1), x, y, w, h, rng.random())
        for _ in range(rng.integers(0, 5)):  # false positives
            x, y = rng.uniform(0, W - 10), rng.uniform(0, H - 10)
            add(im["id"], rng.integers(1, n_cls + 1), x, y, rng.uniform(5, W - x), rng.uniform(5, H - y), rng.random() * 0.6)
        # Touching the border: the whole image.
        if rng.random() < 0.3:
            add(im["id"], rng.integers(1, n_cls + 1), 0, 0, W, H, rng.random() * 0.5)
    # A zero-width and a zero-height box on an object.
    a = anns[0]
    add(a["image_id"], a["category_id"], a["bbox"][0], a["bbox"][1], 0, a["bbox"][3], 0.99)
    add(a["image_id"], a["category_id"], a["bbox"][0], a["bbox"][1], a["bbox"][2], 0, 0.98)
    # More than 100 detections of one class in one image (COCO keeps the best 100).
    a = anns[5]
    im = next(i for i in images if i["id"] == a["image_id"])
    for _ in range(120):
        x, y, w, h = a["bbox"]
        add(im["id"], a["category_id"], x + rng.normal(0, 8), y + rng.normal(0, 8), w + rng.normal(0, 8),
            h + rng.normal(0, 8), rng.random())
    # Detections on the empty image.
    for _ in range(4):
        add(EMPTY_ID, rng.integers(1, n_cls + 1), rng.uniform(0, 300), rng.uniform(0, 200), 60, 50, rng.random())
    # Tied scores: a third of the detections get a score rounded to 0.05.
    for d in dets:
        if rng.random() < 0.33:
            d["score"] = f32(round(d["score"] * 20) / 20)
    return images, anns, cats, difficult, dset, by_img, dets


# ---------------------------------------------------------------------------------------------
# voc_eval.py (py-faster-rcnn / Detectron), with the records built from the JSON instead of XML
# and a stable sort of the scores (voc_eval's quicksort leaves tie order unspecified).
# ---------------------------------------------------------------------------------------------
def voc_ap(rec, prec, use_07_metric=False):
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.
    else:
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.concatenate(([0.], prec, [0.]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def voc_eval(recs, dets, classname, ovthresh=0.5, use_07_metric=False):
    """recs: {image_id: [{'name', 'bbox' (VOC 1-based x1 y1 x2 y2), 'difficult'}]};
    dets: [(image_id, score, [x1, y1, x2, y2])] of this class."""
    class_recs = {}
    npos = 0
    for imagename, objs in recs.items():
        R = [obj for obj in objs if obj['name'] == classname]
        bbox = np.array([x['bbox'] for x in R])
        difficult = np.array([x['difficult'] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {'bbox': bbox, 'difficult': difficult, 'det': det}
    image_ids = [d[0] for d in dets]
    confidence = np.array([d[1] for d in dets], dtype=float)
    BB = np.array([d[2] for d in dets], dtype=float).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind='stable')
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R['bbox'].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1., 0.)
            ih = np.maximum(iymax - iymin + 1., 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                   (BBGT[:, 2] - BBGT[:, 0] + 1.) *
                   (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not R['difficult'][jmax]:
                if not R['det'][jmax]:
                    tp[d] = 1.
                    R['det'][jmax] = 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    if npos == 0:
        return None  # fastdet: no AP for a class without ground truth (voc_eval divides by 0)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return float(voc_ap(rec, prec, use_07_metric))


def voc_all(images, cats, by_img, dset, dets, use07):
    recs = {}
    for im in images:
        recs[im["id"]] = [{"name": a["category_id"], "difficult": (im["id"], k) in dset,
                           "bbox": [a["bbox"][0] + 1, a["bbox"][1] + 1, a["bbox"][0] + a["bbox"][2],
                                    a["bbox"][1] + a["bbox"][3]]}
                          for k, a in enumerate(by_img[im["id"]])]
    out = []
    for c in cats:
        cd = [(d["image_id"], d["score"], [d["bbox"][0] + 1, d["bbox"][1] + 1, d["bbox"][0] + d["bbox"][2],
                                          d["bbox"][1] + d["bbox"][3]]) for d in dets if d["category_id"] == c["id"]]
        out.append(voc_eval(recs, cd, c["id"], 0.5, use07))
    aps = [a for a in out if a is not None]
    return {"map": float(np.mean(aps)), "ap": out}


def coco_all(images, anns, cats, by_img, dset, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt_anns = []
    for im in images:
        for k, a in enumerate(by_img[im["id"]]):
            x, y, w, h = a["bbox"]
            gt_anns.append({"id": len(gt_anns) + 1, "image_id": im["id"], "category_id": a["category_id"],
                            "bbox": [x, y, w, h], "area": w * h, "iscrowd": int((im["id"], k) in dset)})
    gt = {"images": images, "annotations": gt_anns, "categories": cats}
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "gt.json")
        with open(p, "w") as f:
            json.dump(gt, f)
        with contextlib.redirect_stdout(io.StringIO()):
            cg = COCO(p)
            cd = cg.loadRes([dict(d) for d in dets])
            E = COCOeval(cg, cd, "bbox")
            E.evaluate()
            E.accumulate()
            E.summarize()
    prec = E.eval["precision"][:, :, :, 0, 2]  # T, R, K at area all, maxDets 100

    def per_class(p):
        return [float(np.mean(p[..., k][p[..., k] > -1])) if np.any(p[..., k] > -1) else None
                for k in range(p.shape[-1])]

    return {"map": float(E.stats[0]), "map50": float(E.stats[1]), "map75": float(E.stats[2]),
            "ap": per_class(prec), "ap50": per_class(prec[0]), "ap75": per_class(prec[5])}


def main():
    images, anns, cats, difficult, dset, by_img, dets = make()
    out = {
        "empty_image_id": EMPTY_ID,
        "difficult": difficult,
        "detections": dets,
        "voc07": voc_all(images, cats, by_img, dset, dets, True),
        "voc": voc_all(images, cats, by_img, dset, dets, False),
        "coco": coco_all(images, anns, cats, by_img, dset, dets),
    }
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}: {len(dets)} detections on {len(images)} images, {len(difficult)} difficult objects; "
          f"mAP voc07 {out['voc07']['map']:.4f} voc {out['voc']['map']:.4f} coco {out['coco']['map']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
