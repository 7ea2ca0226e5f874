"""pycocotools' COCOeval summary (bbox) of a ground truth and a detections file, for
tests/it/metrics.rs (`coco_summary_equals_pycocotools`), which writes both files from the same
values fastdet evaluates and compares fastdet's `coco_summary` with what this prints.

    python tests/golden/coco_summary.py GT.json DETS.json   # prints {"stats": [12 numbers]}

`stats` is `COCOeval.stats`: AP@[.5:.95], AP50, AP75, AP small, medium, large (maxDets 100),
AR@1, AR@10, AR@100, AR small, medium, large; -1 where no object counts.
"""
import contextlib
import io
import json
import sys


def main(gt_path, dets_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        with open(dets_path) as f:
            dets = json.load(f)
        dt = gt.loadRes(dets)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    print(json.dumps({"stats": [float(v) for v in e.stats]}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
