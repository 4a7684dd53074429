"""Scoring of predictions (no TensorFlow): tasks, one-hot targets, regression, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, mean_absolute_error, mean_squared_error

from edgeflow.errors import EdgeflowError
from edgeflow.runtime.metrics import infer_task, score


@pytest.fixture
def probs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 5))
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_classification_labels_and_one_hot_agree(probs):
    labels = np.random.default_rng(1).integers(0, 5, 200)
    by_label = score(probs, labels)
    by_one_hot = score(probs, np.eye(5)[labels])
    assert by_label["task"] == by_one_hot["task"] == "classification"
    assert by_label["accuracy"] == by_one_hot["accuracy"]
    assert by_label["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert by_label["n"] == 200


def test_regression_figures(probs):
    y = np.random.default_rng(2).normal(size=(200, 5))
    result = score(probs, y)
    assert result["task"] == "regression"
    assert result["mae"] == pytest.approx(mean_absolute_error(y, probs))
    assert result["mse"] == pytest.approx(mean_squared_error(y, probs))


def test_single_sigmoid_column_is_binary_classification():
    pred = np.array([[0.9], [0.2], [0.6], [0.4]], np.float32)
    y = np.array([1, 0, 0, 0])
    assert infer_task(pred, y) == "classification"
    assert score(pred, y)["accuracy"] == pytest.approx(accuracy_score(y, pred[:, 0] > 0.5))
    assert score(pred, y, task="regression")["task"] == "regression"


def test_bad_input_is_an_edgeflow_error(probs):
    with pytest.raises(EdgeflowError, match="did you mean 'regression'"):
        score(probs, np.zeros(200), task="regresion")
    with pytest.raises(EdgeflowError, match="targets for 200 samples"):
        score(probs, np.zeros(10))
    with pytest.raises(EdgeflowError, match="2 outputs"):
        score([probs, probs], np.zeros(200))


def test_score_gives_figures_per_output_for_several_outputs():
    cls = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    reg = np.array([[1.0], [2.0], [4.0]])
    result = score([cls, reg], [np.array([0, 1, 1]), np.array([1.0, 2.0, 3.0])])
    assert result["outputs"] == [
        {"task": "classification", "accuracy": 2 / 3, "n": 3},
        {"task": "regression", "mae": 1 / 3, "mse": 1 / 3, "n": 3},
    ]
    assert result["accuracy"] == 2 / 3
    with pytest.raises(EdgeflowError, match="pass one target array per output"):
        score([cls, reg], np.array([0, 1, 1]))
