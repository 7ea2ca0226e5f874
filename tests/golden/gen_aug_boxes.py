"""Golden boxes after flip / squash / rotate, computed by albumentations, for tests/it/aug_golden.rs.

Run with the project's venv python (albumentations and opencv-python-headless are in
environment.yml):
    python tests/golden/gen_aug_boxes.py
It writes tests/golden/aug_boxes.json next to this file and prints a summary.

Conventions (see src/boxes.rs and src/transforms.rs):
- fastdet's BBox is (top, left, bottom, right), zero-based, INCLUSIVE pixels; in continuous
  pixel-edge coordinates it covers [left, right+1) x [top, bottom+1).
- albumentations' 'pascal_voc' boxes are [x_min, y_min, x_max, y_max] in continuous pixel-edge
  coordinates, so BBox(top, left, bottom, right) <-> [left, top, right+1, bottom+1].
  Every box in this file is in that continuous [x0, y0, x1, y1] form.
- albumentations' Rotate turns boxes with the matrix [[c, s], [-s, c]] about (W/2, H/2)
  (fgeometric.center_bbox, continuous coordinates; the *image* is turned about
  (W/2 - 0.5, H/2 - 0.5) in pixel-centre indices, the same point), counter-clockwise on screen
  for a positive angle: the same map as fastdet's Affine::rotate about (W/2, H/2).
- rotate_method="largest_box" (the 4 corners go through the map and their bounding box is
  taken), as fastdet's move_boxes; albumentations' other method ("ellipse") would give
  smaller boxes.
- Boxes are clipped to the image after every step (albumentations) or once at the end
  (fastdet); both are the same here since every later step maps the frame onto the frame.
  min_width = min_height = 1 output pixel, as fastdet drops boxes under a pixel.

The albumentations 2.x peer bug: with a reflecting border (BORDER_REFLECT / REFLECT_101),
fgeometric.bboxes_affine adds mirrored copies of every box for the reflected tiles of the
padding grid (generate_reflected_bboxes) and keeps those whose image lands in the frame, so the
output can hold MORE boxes than the input, several with the same label. fastdet does not (a box
is an object, its reflection is not a labelled object). Here each case is run twice: with
BORDER_REFLECT (what the lesson asks) and with BORDER_CONSTANT (same matrix, no copies). Each
input box carries its index as a label; the expected box of index i is the reflect-mode box of
label i that equals the constant-mode one, and the script checks that the constant-mode boxes
are exactly the reflect-mode boxes less the copies. The counts are kept in the JSON
(alb_reflect_count, alb_constant_count) and the copies in reflect_copies.
"""
import json
import os
import re

import albumentations as A
import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "data", "coco128-voc")
IMAGE_DIR = os.path.join(DATA, "VOCdevkit", "VOC2007", "JPEGImages")
OUT = os.path.join(HERE, "aug_boxes.json")
SZ = 224

# Train images with many boxes, both orientations, several with boxes touching the border
# (boxes, boxes touching the border, size): 315 (22, 2, 640x427), 544 (13, 1, 640x427),
# 368 (12, 1, 480x640), 395 (11, 2, 640x580), 113 (6, 2, 416x640), 536 (5, 2, 448x336).
IMAGES = ["000000000315.jpg", "000000000544.jpg", "000000000368.jpg",
          "000000000395.jpg", "000000000113.jpg", "000000000536.jpg"]

# Each case: a list of ops; "squash" is Resize(SZ, SZ) (fastdet CropType::No to SZ) and always
# comes last when present. Without "squash" the boxes stay in the input image's pixels.
CASES = [
    ("flip", [["flip"]]),
    ("squash", [["squash"]]),
    ("flip_squash", [["flip"], ["squash"]]),
] + [
    (f"rotate{a:+g}", [["rotate", a]]) for a in (3, -10, 30)
] + [
    (f"rotate{a:+g}_squash", [["rotate", a], ["squash"]]) for a in (3, -10, 30)
] + [
    ("flip_rotate+10_squash", [["flip"], ["rotate", 10], ["squash"]]),
]


def alb_pipeline(ops, border_mode):
    tfms = []
    for op in ops:
        if op[0] == "flip":
            tfms.append(A.HorizontalFlip(p=1.0))
        elif op[0] == "rotate":
            a = float(op[1])
            tfms.append(A.Rotate(limit=(a, a), p=1.0, border_mode=border_mode,
                                 rotate_method="largest_box", crop_border=False))
        elif op[0] == "squash":
            tfms.append(A.Resize(SZ, SZ, interpolation=cv2.INTER_LINEAR))
        else:
            raise ValueError(op)
    return A.Compose(tfms, bbox_params=A.BboxParams(
        format="pascal_voc", label_fields=["idx"], min_width=1.0, min_height=1.0))


def run(ops, border_mode, img, boxes):
    out = alb_pipeline(ops, border_mode)(image=img, bboxes=np.array(boxes, dtype=np.float64),
                                         idx=list(range(len(boxes))))
    return [(int(i), [float(v) for v in b]) for b, i in zip(out["bboxes"], out["idx"])]


def close(a, b, tol=1e-3):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def load_boxes():
    with open(os.path.join(DATA, "pascal_train2007.json")) as f:
        d = json.load(f)
    by_name = {im["file_name"]: im for im in d["images"]}
    boxes = {}
    for name in IMAGES:
        im = by_name[name]
        bs = []
        for a in d["annotations"]:
            if a["image_id"] == im["id"] and not a.get("ignore", 0):
                x, y, w, h = a["bbox"]
                if w > 0 and h > 0:
                    # hw_bb: BBox(top=y, left=x, bottom=y+h-1, right=x+w-1) -> [x, y, x+w, y+h]
                    bs.append([float(x), float(y), float(x + w), float(y + h)])
        boxes[name] = (im, bs)
    return boxes


def build_doc():
    """The golden document (also used by benches/aug_peers.py for its box-agreement check)."""
    boxes = load_boxes()
    cases = []
    for name in IMAGES:
        im, bs = boxes[name]
        img = cv2.imread(os.path.join(IMAGE_DIR, name), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (im["height"], im["width"]), name
        for case_name, ops in CASES:
            refl = run(ops, cv2.BORDER_REFLECT, img, bs)
            const = run(ops, cv2.BORDER_CONSTANT, img, bs)
            expected, copies, unmatched = [], [], list(refl)
            for i, b in const:
                j = next((k for k, (ri, rb) in enumerate(unmatched) if ri == i and close(rb, b)), None)
                assert j is not None, f"{name} {case_name}: box {i} of BORDER_CONSTANT missing with BORDER_REFLECT"
                expected.append([i] + [round(v, 4) for v in unmatched.pop(j)[1]])
            copies = [[i] + [round(v, 4) for v in b] for i, b in unmatched]
            squashed = any(op[0] == "squash" for op in ops)
            cases.append({
                "name": f"{name[:-4]}/{case_name}",
                "image": name,
                "width": im["width"],
                "height": im["height"],
                "ops": ops,
                "out_size": [SZ, SZ] if squashed else [im["width"], im["height"]],
                "boxes_in": bs,
                "expected": expected,
                "dropped": sorted(set(range(len(bs))) - {e[0] for e in expected}),
                "alb_reflect_count": len(refl),
                "alb_constant_count": len(const),
                "reflect_copies": copies,
            })
    doc = {
        "generator": "tests/golden/gen_aug_boxes.py",
        "albumentations": A.__version__,
        "opencv": cv2.__version__,
        "data": "data/coco128-voc pascal_train2007.json",
        "box_format": "continuous pixel edges [x0, y0, x1, y1] (albumentations pascal_voc); "
                      "fastdet BBox(top, left, bottom, right) = [left, top, right+1, bottom+1]",
        "expected_format": "[input index, x0, y0, x1, y1] in output pixels, boxes under 1 px dropped",
        "ops": "flip = HorizontalFlip(p=1); rotate a = Rotate(limit=(a, a), p=1, "
               "border_mode=BORDER_REFLECT, rotate_method='largest_box'), a in degrees, "
               "counter-clockwise; squash = Resize(224, 224)",
        "cases": cases,
    }
    return doc


def main():
    doc = build_doc()
    cases = doc["cases"]
    text = json.dumps(doc, indent=1)
    # One box (a list of numbers) per line, to keep the file short and diffs readable.
    text = re.sub(r"\[\s+(-?[\d.]+(?:,\s+-?[\d.]+)*)\s+\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    text = re.sub(r'\[\s+("\w+"(?:,\s+-?[\d.]+)?)\s+\]',
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    with open(OUT, "w") as f:
        f.write(text + "\n")
    json.loads(text)
    for c in cases:
        extra = c["alb_reflect_count"] - c["alb_constant_count"]
        print(f"{c['name']:40s} in {len(c['boxes_in']):2d} out {len(c['expected']):2d}"
              f" dropped {c['dropped']}" + (f"  (+{extra} mirrored copies with BORDER_REFLECT)" if extra else ""))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
