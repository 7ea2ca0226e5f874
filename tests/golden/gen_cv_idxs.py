"""Golden validation indices from numpy's legacy generator, as fastai 0.7's get_cv_idxs makes them.

fastai 0.7 (fastai/dataset.py):
    def get_cv_idxs(n, cv_idx=0, val_pct=0.2, seed=42):
        np.random.seed(seed)
        n_val = int(val_pct*n)
        idx_start = cv_idx*n_val
        idxs = np.random.permutation(n)
        return idxs[idx_start:idx_start+n_val]

Run with the project's venv python (numpy installed):
    python tests/golden/gen_cv_idxs.py
It writes tests/golden/cv_idxs.json next to this file and prints it.
"""
import json
import os

import numpy as np

VAL_PCT = 0.2
CASES = [
    (5011, 42),  # VOC2007 trainval, the lesson's split
    (2501, 42),  # VOC2007 train
    (65, 42),    # the bundled sample
    (52, 42),
    (1, 42),
    (2, 42),
    (5, 42),
    (10, 0),
    (1000, 7),
    (100, 43),
    (20000, 1),  # many rejection rounds
    (0, 42),
]


def get_cv_idxs(n, cv_idx=0, val_pct=0.2, seed=42):
    np.random.seed(seed)
    n_val = int(val_pct * n)
    idx_start = cv_idx * n_val
    idxs = np.random.permutation(n)
    return idxs[idx_start:idx_start + n_val]


def main():
    out = {
        "numpy_version": np.__version__,
        "val_pct": VAL_PCT,
        "cases": [
            {
                "n": n,
                "seed": seed,
                "idxs": [int(i) for i in get_cv_idxs(n, val_pct=VAL_PCT, seed=seed)],
                "permutation_head": [int(i) for i in (np.random.seed(seed), np.random.permutation(n))[1][:50]],
            }
            for n, seed in CASES
        ],
    }
    text = json.dumps(out)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cv_idxs.json")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
