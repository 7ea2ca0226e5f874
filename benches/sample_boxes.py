"""The bundled sample's photos with their boxes, for the Python side of the benchmarks."""
import json
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DATA = os.path.join(ROOT, "data", "coco128-voc")
IMAGE_DIR = os.path.join(DATA, "VOCdevkit", "VOC2007", "JPEGImages")


def sample_images():
    """(image record, [([x0, y0, x1, y1], category_id), ...]) for every photo of the train and
    val splits: boxes in pascal_voc corners, ignored and empty boxes left out."""
    out = []
    for split in ("train", "val"):
        with open(os.path.join(DATA, f"pascal_{split}2007.json")) as f:
            d = json.load(f)
        anns = {}
        for a in d["annotations"]:
            if not a.get("ignore", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0:
                x, y, w, h = a["bbox"]
                anns.setdefault(a["image_id"], []).append(([x, y, x + w, y + h], a["category_id"]))
        out += [(im, anns.get(im["id"], [])) for im in d["images"]]
    return out
