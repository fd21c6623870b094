"""classify — the paper's ConvNet (6 conv, 3 pool, 1 dense): train on any image set, test on real SVHN.

    from classify import train_classifier, evaluate, predict_labels, load_model
    model, metrics = train_classifier(["real"], test="real", data_dir="svhn_data", seed=0)
    metrics["test_accuracy"]                      # fraction 0..1
    evaluate(model, x_test, y_test)["accuracy"]   # uint8 (N, 32, 32, 3) images, digits 0..9
    predict_labels(model, x_uint8)                # int64 digits

The evaluations of the generators that need this classifier sit here too, above `gan`:
    fidelity("runs/paper", data_dir="svhn_data")  # label fidelity of a DCGAN run (classify/fidelity.py)
    compare_simgan("runs/simgan", proc_x, proc_y, data_dir="svhn_data")   # refined vs raw (simgan_compare.py)

Command line: `python -m classify train|eval|predict|fidelity|compare-simgan --help`.
"""
from classify.augment import NONE, AugmentConfig
from classify.data import ClassifyError, parse_spec, resolve_sets
from classify.evaluate import draw_confusion, evaluate, metrics_from_predictions, predict_labels, predict_proba
from classify.model import ARCHS, build_model, load_model, save_model
from classify.train import TrainConfig, did_not_learn, train_classifier, validation_size
from classify.fidelity import fidelity, label_fidelity
from classify.simgan_compare import compare as compare_simgan

__all__ = ["NONE", "AugmentConfig", "ClassifyError", "parse_spec", "resolve_sets", "draw_confusion", "evaluate",
           "metrics_from_predictions", "predict_labels", "predict_proba", "ARCHS", "build_model", "load_model",
           "save_model", "TrainConfig", "did_not_learn", "train_classifier", "validation_size", "fidelity",
           "label_fidelity", "compare_simgan"]
