"""classify — the paper's ConvNet (6 conv, 3 pool, 1 dense): train on any image set, test on real SVHN.

    from classify import train_classifier, evaluate, predict_labels, load_model
    model, metrics = train_classifier(["real"], test="real", data_dir="svhn_data", seed=0)
    metrics["test_accuracy"]                      # fraction 0..1
    evaluate(model, x_test, y_test)["accuracy"]   # uint8 (N, 32, 32, 3) images, digits 0..9
    predict_labels(model, x_uint8)                # int64 digits

Command line: `python -m classify train|eval|predict --help`.
"""
from classify.data import ClassifyError, parse_spec, resolve_sets
from classify.evaluate import evaluate, metrics_from_predictions, predict_labels, predict_proba
from classify.model import ARCHS, build_model, load_model, save_model
from classify.train import TrainConfig, train_classifier

__all__ = ["ClassifyError", "parse_spec", "resolve_sets", "evaluate", "metrics_from_predictions",
           "predict_labels", "predict_proba", "ARCHS", "build_model", "load_model", "save_model",
           "TrainConfig", "train_classifier"]
