"""Writes scikit-learn's bundled breast-cancer set (Wisconsin diagnostic) as .npy folders.

    python examples/breast_cancer/prepare.py [OUT]     (default examples/breast_cancer/data)

OUT/train and OUT/val each hold x.npy (float64, the 30 raw features; the
trainer standardises them, as logreg.yaml asks) and y.npy (float64, 1 for
benign). A fixed shuffle within each class puts 80% of either in train.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer


def main(out: Path) -> None:
    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    train, val = [], []
    for label in (0, 1):  # stratified: the same class balance in both parts
        members = rng.permutation(np.flatnonzero(y == label))
        cut = int(round(0.8 * len(members)))
        train += list(members[:cut])
        val += list(members[cut:])
    for part, index in (("train", rng.permutation(train)), ("val", np.array(val))):
        folder = out / part
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "x.npy", x[index].astype(np.float64))
        np.save(folder / "y.npy", y[index].astype(np.float64))
    print(f"wrote {len(train)} training and {len(val)} validation cases to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
