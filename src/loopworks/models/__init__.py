"""Models whose predictions people review: a calibrated baseline and an adapter for any model.

Start with :func:`read_labeled_data` and :func:`train_model` (``loopworks model train``),
then :func:`load_model` and :func:`predict_file` (``loopworks predict``). Review code takes
any model through :func:`as_predictor`: a saved model's name, an object with
``predict_proba``, or a function from texts to class probabilities.

Saved models are pickles (joblib): loading one runs code from the file, so load only
models you trust.
"""

from __future__ import annotations

from loopworks.models.batch import PredictionReport, predict_file
from loopworks.models.calibration import (
    ReliabilityCurve,
    TemperatureScaler,
    expected_calibration_error,
    reliability_curve,
    softmax,
    top_label,
)
from loopworks.models.classifier import (
    CALIBRATION_METHODS,
    DEFAULT_CLASSES,
    FEATURE_KINDS,
    SentimentModel,
)
from loopworks.models.data import LabeledData, labeled_data_from_frame, read_labeled_data
from loopworks.models.evaluation import Evaluation, evaluate_probabilities, plot_reliability
from loopworks.models.predictions import Predictions, check_probabilities, prediction_columns
from loopworks.models.predictor import Predictor, ProbabilityPredictor, as_predictor
from loopworks.models.registry import (
    ModelCard,
    ModelRegistry,
    list_models,
    load_model,
    parse_model_ref,
    save_model,
    validate_model_name,
)
from loopworks.models.training import TrainingResult, train_model

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CLASSES",
    "FEATURE_KINDS",
    "Evaluation",
    "LabeledData",
    "ModelCard",
    "ModelRegistry",
    "PredictionReport",
    "Predictions",
    "Predictor",
    "ProbabilityPredictor",
    "ReliabilityCurve",
    "SentimentModel",
    "TemperatureScaler",
    "TrainingResult",
    "as_predictor",
    "check_probabilities",
    "evaluate_probabilities",
    "expected_calibration_error",
    "labeled_data_from_frame",
    "list_models",
    "load_model",
    "parse_model_ref",
    "plot_reliability",
    "predict_file",
    "prediction_columns",
    "read_labeled_data",
    "reliability_curve",
    "save_model",
    "softmax",
    "top_label",
    "train_model",
    "validate_model_name",
]
