"""Scoring predictions, the same way for Keras and for ``.tflite`` models.

``score`` is the one place that turns predictions and targets into a result dict, so a
report can show Keras and LiteRT (or TFLM) figures side by side and know they were
computed alike. Tasks are picked by name from ``TASKS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeflow.errors import EdgeflowError, closest

TASKS = {
    "auto": "classification when the targets are class labels (or one-hot) of the output, else regression",
    "classification": "accuracy of argmax (or of > 0.5 for a single sigmoid output)",
    "regression": "mean absolute and mean squared error",
}


def get_task(name: str) -> str:
    """Validate a task name (``auto``, ``classification``, ``regression``)."""
    if name not in TASKS:
        raise EdgeflowError(
            f"unknown task {name!r}{closest(str(name), TASKS)}; valid tasks are " + ", ".join(TASKS)
        )
    return name


def infer_task(pred: np.ndarray, y: np.ndarray) -> str:
    """``classification`` or ``regression`` from the predictions' and targets' shapes.

    Classification when the output is (N, C) with C ≥ 2 and the targets are N integer labels
    or (N, C) one-hot rows, or when the output is a single column in [0, 1] and the targets
    are 0/1 integers; regression otherwise.
    """
    pred = np.asarray(pred)
    y = np.asarray(y)
    n = len(pred)
    if pred.ndim == 2 and pred.shape[1] >= 2:
        if y.shape == (n,) or y.shape == (n, 1):
            if y.dtype.kind in "iub" or (
                y.dtype.kind == "f" and np.all(np.equal(np.mod(y, 1), 0))
            ):
                return "classification"
        if y.shape == pred.shape and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
            return "classification"
        return "regression"
    if pred.size == n and y.size == n and y.dtype.kind in "iub" and np.all((y == 0) | (y == 1)):
        if np.all((pred >= 0) & (pred <= 1)):
            return "classification"
    return "regression"


def score(pred, y, *, task: str = "auto") -> dict:
    """Score predictions against targets.

    Classification: ``accuracy = mean(argmax(pred) == label)`` (one-hot targets are turned
    into labels; a single sigmoid column uses ``pred > 0.5``). Regression:
    ``mae = mean(|pred - y|)``, ``mse = mean((pred - y)²)`` over every element.

    Returns:
        ``{"task": "classification", "accuracy": float, "n": N}`` or
        ``{"task": "regression", "mae": float, "mse": float, "n": N}``. For a model with
        several outputs (``pred`` and ``y`` lists, one entry per output) the first output's
        figures plus ``"outputs"``: one such dict per output, in output order.

    Example:
        >>> score(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]))["accuracy"]
        0.5
    """
    task = get_task(task)
    if isinstance(pred, (list, tuple)) and len(pred) > 1:
        if not isinstance(y, (list, tuple)) or len(y) != len(pred):
            raise EdgeflowError(
                f"the model has {len(pred)} outputs: pass one target array per output, as a list"
            )
        per_output = [score(p, t, task=task) for p, t in zip(pred, y, strict=True)]
        return {**per_output[0], "outputs": per_output}
    if isinstance(pred, (list, tuple)):
        pred = pred[0]
        y = y[0] if isinstance(y, (list, tuple)) and len(y) == 1 else y
    pred = np.asarray(pred)
    y = np.asarray(y)
    n = len(pred)
    if len(y) != n:
        raise EdgeflowError(f"{len(y)} targets for {n} samples: pass one target per sample")
    if n == 0:
        raise EdgeflowError("no samples to evaluate")
    if task == "auto":
        task = infer_task(pred, y)
    if task == "classification":
        if pred.ndim == 2 and pred.shape[1] >= 2:
            labels = y.argmax(axis=1) if y.shape == pred.shape else y.reshape(n)
            hits = pred.argmax(axis=1) == labels.astype(np.int64)
        else:
            hits = (pred.reshape(n) > 0.5) == (y.reshape(n) > 0.5)
        return {"task": "classification", "accuracy": float(np.mean(hits)), "n": int(n)}
    if pred.size != y.size:
        raise EdgeflowError(
            f"targets of shape {y.shape} do not match the model output {pred.shape} for regression"
        )
    err = pred.reshape(n, -1).astype(np.float64) - y.reshape(n, -1).astype(np.float64)
    return {
        "task": "regression",
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err**2)),
        "n": int(n),
    }


def headline(scored: dict | None) -> tuple[str, float] | None:
    """The one figure a table shows for a :func:`score` result: ``("accuracy", value)`` for
    classification, ``("mae", value)`` for regression; None for no result."""
    if not scored:
        return None
    metric = "accuracy" if scored["task"] == "classification" else "mae"
    return metric, scored[metric]


def by_output(names: list[str], keras: dict | None = None, tflite: dict | None = None) -> dict | None:
    """Per-output figures of a model with several outputs, keyed by output name.

    ``keras`` and ``tflite`` are :func:`score` results of the same model before and after
    conversion, on the same data (their ``"outputs"`` list, in the model's output order;
    ``edgeflow.convert`` writes the ``.tflite`` outputs in that order). Each output gets
    ``{"metric": "accuracy" | "mae", "keras": float | None, "tflite": float | None}``:
    accuracy for a classification output, mean absolute error for a regression one
    (formulas in :func:`score`). None when the results hold no per-output list (one output).

    Example:
        >>> by_output(["digit", "ink"], keras=scored)
        {'digit': {'metric': 'accuracy', 'keras': 0.95, 'tflite': None}, 'ink': {...}}
    """
    per = {side: (r or {}).get("outputs") for side, r in (("keras", keras), ("tflite", tflite))}
    if not any(per.values()):
        return None
    result = {}
    for i, name in enumerate(names):
        entry: dict = {"metric": None, "keras": None, "tflite": None}
        for side, outputs in per.items():
            if outputs:
                entry["metric"], entry[side] = headline(outputs[i])
        result[name] = entry
    return result


def evaluate_keras(model, x, y, *, task: str = "auto", batch_size: int = 256) -> dict:
    """Score a Keras model on ``(x, y)``; the same dict as ``litert.evaluate``.

    Example:
        >>> evaluate_keras(model, x_test, y_test)
        {'task': 'classification', 'accuracy': 0.96, 'n': 450}
    """
    from edgeflow._keras import ensure_keras2

    model = ensure_keras2(model)
    x = ([np.asarray(a, dtype=np.float32) for a in x] if isinstance(x, (list, tuple))
         else np.asarray(x, dtype=np.float32))
    pred = model.predict(x, batch_size=batch_size, verbose=0)
    return score(pred, y, task=task)


MAX_DROP = 1.0  # default --max-drop / recipe max_drop, in points


@dataclass
class Comparison:
    """A command's baseline and result on the same data, and the drop between them.

    The drop is in points: for classification, percentage points of accuracy
    (``100 · (baseline - result)``); for regression, percent of MAE added
    (``100 · (result - baseline) / baseline``). A negative drop is a gain.

    Attributes:
        metric: ``accuracy`` or ``mae``.
        baseline, result: the two scores (:func:`score` dicts), and what each model is
            (``baseline_model``, ``result_model``: e.g. ``"float Keras model"``).
        data: which data scored them (e.g. ``"test.npz (--eval-data, 450 samples)"``).
        max_drop: the limit, in points.
        output: the output scored, by name, for a model with several outputs (None: the
            model's one output); the text names it.
        limit: how the user set ``max_drop``, for the text: ``--max-drop`` (a command's
            option) or ``max_drop`` (a recipe's key).
    """

    baseline: dict
    result: dict
    baseline_model: str
    result_model: str
    data: str
    max_drop: float = MAX_DROP
    output: str | None = None
    limit: str = "--max-drop"

    @property
    def metric(self) -> str:
        return "accuracy" if "accuracy" in self.baseline else "mae"

    @property
    def drop(self) -> float:
        b, r = self.baseline[self.metric], self.result[self.metric]
        if self.metric == "accuracy":
            return 100.0 * (b - r)
        return 100.0 * (r - b) / max(b, 1e-9)  # finite for JSON even for a perfect baseline

    @property
    def over_limit(self) -> bool:
        return self.drop > self.max_drop

    def warning(self) -> str | None:
        """The warning line when the drop is over the limit, else None."""
        if not self.over_limit:
            return None
        change = (f"dropped {self.drop:.2f} points" if self.metric == "accuracy"
                  else f"rose {self.drop:.2f}%")
        return (f"{self._named()}{self.metric} {change} ({self.baseline[self.metric]:.4f} → "
                f"{self.result[self.metric]:.4f}), over {self.limit} {self.max_drop:g}")

    def _named(self) -> str:
        return "" if self.output is None else f"output {self.output}: "

    def render(self) -> str:
        """Plain text: which data (and output), the two labelled columns, the drop and the limit."""
        b_head, r_head = f"baseline: {self.baseline_model}", f"result: {self.result_model}"
        width = max(len(b_head), 10)
        keys = [k for k in (("accuracy",) if self.metric == "accuracy" else ("mae", "mse"))
                if k in self.baseline and k in self.result]
        lines = [f"{self._named()}scored on {self.data}", f"{'':<9} {b_head:<{width}}  {r_head}"]
        lines += [f"{k:<9} {self.baseline[k]:<{width}.4f}  {self.result[k]:.4f}" for k in keys]
        unit = "points" if self.metric == "accuracy" else "% MAE"
        lines.append(f"drop      {self.drop:.2f} {unit} (limit {self.max_drop:g})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "baseline": self.baseline[self.metric],
                "result": self.result[self.metric], "drop": self.drop, "max_drop": self.max_drop,
                "over_limit": self.over_limit, "baseline_model": self.baseline_model,
                "result_model": self.result_model, "data": self.data}


def shown(comparison: Comparison | None, comparisons: dict | None) -> list[Comparison]:
    """The comparisons a command prints and checks: each output's (``comparisons``, by
    output name) for a model with several outputs, else the one ``comparison`` (or none)."""
    return list((comparisons or {}).values()) or ([comparison] if comparison is not None else [])


def render_shown(comparison: Comparison | None, comparisons: dict | None) -> str:
    """Each shown comparison (:func:`shown`) as :meth:`Comparison.render` prints it, each
    followed by its ``warning:`` line when over the limit; ``""`` for none."""
    lines = []
    for c in shown(comparison, comparisons):
        lines.append(c.render())
        if c.over_limit:
            lines.append(f"warning: {c.warning()}")
    return "\n".join(lines)


def compare_keras(baseline, result, x, y, *, baseline_model: str, result_model: str, data: str,
                  max_drop: float = MAX_DROP) -> Comparison:
    """Score two Keras models on the same ``(x, y)`` (:func:`evaluate_keras`) side by side.

    Example:
        >>> print(compare_keras(model, pruned, x, y, baseline_model="input Keras model",
        ...                     result_model="pruned Keras model", data="test.npz").render())
    """
    return Comparison(evaluate_keras(baseline, x, y), evaluate_keras(result, x, y),
                      baseline_model, result_model, f"{data}, {len(x)} samples", max_drop)
