"""Writes the digits data (bundled with scikit-learn) as .npy folders.

    python examples/digits/prepare.py [OUT]     (default examples/digits/data)

OUT/train and OUT/val each hold x.npy (float32, pixels scaled to [0, 1]) and
y.npy (int64 labels); a fixed shuffle puts 80% of the 1797 images in train.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main(out: Path) -> None:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    for part, index in (("train", order[:cut]), ("val", order[cut:])):
        folder = out / part
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "x.npy", x[index])
        np.save(folder / "y.npy", y[index])
    print(f"wrote {cut} training and {len(y) - cut} validation digits to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
