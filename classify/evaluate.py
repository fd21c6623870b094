"""Testing the ConvNet: probabilities (with test-time augmentation), accuracy, per-digit accuracy,
the confusion matrix, and two pictures of the result.

The paper's metric is the accuracy on the real SVHN test set: the fraction of test images whose
most probable class is the true digit. `evaluate` averages the softmax probabilities of the image
and of copies shifted by TTA_SHIFT pixels left, right, up and down (test-time augmentation, TTA);
pass `tta=False` for the plain single-view number.
"""
from pathlib import Path

import numpy as np

from nn import backend
from svhn.imageset import check_image_set, to_float

from classify.augment import shifted_copies
from common.figures import pyplot, save_figure

TTA_SHIFT = 2
TTA_SHIFTS = ((0, 0), (-TTA_SHIFT, 0), (TTA_SHIFT, 0), (0, -TTA_SHIFT), (0, TTA_SHIFT))
NUM_CLASSES = 10


def softmax(z):
    """p_k = exp(z_k - max z) / sum_j exp(z_j - max z), row by row (z on the current device)."""
    xp = backend.xp
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(model, x, tta=True, batch_size=500):
    """Class probabilities (N, 10) as a host NumPy array for uint8 images x (N, 32, 32, 3).

    The model runs in eval mode (BatchNorm's running statistics, no dropout), batch by batch;
    with `tta` each batch's probabilities are the mean over the TTA_SHIFTS views.
    """
    out = []
    for i in range(0, len(x), batch_size):
        xb = backend.asarray(to_float(x[i:i + batch_size]))
        views = shifted_copies(xb, TTA_SHIFTS) if tta else [xb]
        p = sum(softmax(model.forward(v, training=False)) for v in views) / len(views)
        out.append(backend.to_numpy(p))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, NUM_CLASSES), np.float32)


def predict_labels(model, x, tta=True):
    """The predicted digit (int64, 0..9) of each uint8 image in x (N, 32, 32, 3)."""
    return predict_proba(model, x, tta=tta).argmax(axis=1).astype(np.int64)


def confusion_matrix(y_true, y_pred, num_classes=NUM_CLASSES):
    """C[i, j] = number of images of digit i predicted as digit j (rows: truth, columns: prediction)."""
    C = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(C, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return C


def metrics_from_predictions(y_true, y_pred):
    """Accuracy, per-digit accuracy (None for a digit absent from y_true) and the confusion matrix."""
    C = confusion_matrix(y_true, y_pred)
    per_digit = [float(C[k, k] / C[k].sum()) if C[k].sum() else None for k in range(NUM_CLASSES)]
    return {
        "accuracy": float(np.trace(C) / C.sum()),
        "per_digit_accuracy": per_digit,
        "confusion_matrix": C.tolist(),
        "n": int(C.sum()),
    }


def evaluate(model, x, y, tta=True, source="test set"):
    """Test `model` on uint8 images x (N, 32, 32, 3) with digits y.

    Returns a dict: accuracy (fraction 0..1), per_digit_accuracy (list by digit), confusion_matrix
    (10×10 list, rows = true digit), n, loss (mean cross-entropy of the averaged probabilities), tta,
    and `predictions` (an int64 array, not JSON; pop it before writing).
    """
    check_image_set(x, y, source)
    p = predict_proba(model, x, tta=tta)
    pred = p.argmax(axis=1)
    metrics = metrics_from_predictions(y, pred)
    metrics["loss"] = float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())
    metrics["tta"] = bool(tta)
    metrics["predictions"] = pred.astype(np.int64)
    return metrics


def draw_confusion(ax, C, fontsize=7):
    """Draw the confusion matrix C (rows = true digit, columns = predicted) on a matplotlib axis:
    each row's rates as shades of blue, the counts in the non-empty cells."""
    C = np.asarray(C)
    rates = C / np.maximum(C.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i, j in zip(*np.nonzero(C)):
        ax.text(j, i, str(C[i, j]), ha="center", va="center", fontsize=fontsize,
                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")


def save_confusion_png(path, C, title="confusion matrix"):
    """Draw the confusion matrix C (rows = true digit, columns = predicted) as a PNG, counts in the cells."""
    fig, ax = pyplot().subplots(figsize=(5.5, 5))
    draw_confusion(ax, C, fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def save_misclassified_png(path, x, y, pred, max_images=60, ncol=10):
    """A grid of (up to max_images) misclassified test images, in test-set order, each captioned
    'true>predicted'; returns how many are shown (no file when there is none)."""
    wrong = np.flatnonzero(np.asarray(pred) != np.asarray(y))
    shown = wrong[:max_images]
    if len(shown) == 0:
        return 0
    nrow = -(-len(shown) // ncol)
    fig, axes = pyplot().subplots(nrow, ncol, figsize=(ncol * 0.9, nrow * 1.05 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), shown):
        ax.imshow(x[i], interpolation="nearest")
        ax.set_title(f"{y[i]}>{pred[i]}", fontsize=8, pad=2)
    fig.suptitle(f"misclassified (true>predicted): {len(shown)} of {len(wrong)} shown", fontsize=9)
    fig.tight_layout(pad=0.3)
    save_figure(fig, path, dpi=100)
    return len(shown)


def write_report(folder, x, y, predictions, result, test_name):
    """confusion.png and misclassified.png for one test, in `folder`."""
    folder = Path(folder)
    save_confusion_png(folder / "confusion.png", result["confusion_matrix"],
                       title=f"{test_name}: accuracy {result['accuracy']:.4f} (n = {result['n']})")
    save_misclassified_png(folder / "misclassified.png", x, y, predictions)
