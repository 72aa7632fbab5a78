"""Writes scikit-learn's bundled diabetes set as .npy folders, and the
validation RMSE of ordinary least squares on the same split as a yardstick.

    python examples/diabetes/prepare.py [OUT]     (default examples/diabetes/data)

OUT/train and OUT/val each hold x.npy (float64, the ten baseline measurements;
the trainer standardises them, as diabetes.yaml asks) and y.npy (float64, the
disease progression one year later, 25 to 346). A fixed shuffle puts 80% of
the 442 patients in train.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes


def least_squares_rmse(x_train, y_train, x_val, y_val) -> float:
    """Validation RMSE of the least-squares fit y = x . w + b on the training part."""
    design = np.hstack([x_train, np.ones((len(x_train), 1))])
    coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    pred = np.hstack([x_val, np.ones((len(x_val), 1))]) @ coef
    return float(np.sqrt(np.mean((pred - y_val) ** 2)))


def main(out: Path) -> None:
    x, y = load_diabetes(return_X_y=True, scaled=False)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(round(0.8 * len(y)))
    parts = {"train": order[:cut], "val": order[cut:]}
    for part, index in parts.items():
        folder = out / part
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "x.npy", x[index].astype(np.float64))
        np.save(folder / "y.npy", y[index].astype(np.float64))
    rmse = least_squares_rmse(x[parts["train"]], y[parts["train"]], x[parts["val"]], y[parts["val"]])
    print(f"wrote {cut} training and {len(y) - cut} validation patients to {out}")
    print(f"least squares on the same split: val rmse {rmse:.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data")
