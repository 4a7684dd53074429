"""What a run of stages produces: one :class:`StageRecord` per stage and a :class:`RunResult`.

This module sits below every orchestrator of stages (``edgeflow.pipeline`` and the recipes
built by ``edgeflow.distill.chain``) and imports none of them, so any stage, the report and
the search can read and write records without importing the pipeline.

A record is extensible: a stage puts figures of its own in ``extra`` (a JSON-ready dict,
e.g. ``{"int8": "full int8 ...", "float_layers": [...]}``) without a change here; the
terminal table prints the keys listed in :data:`SUMMARY_KEYS`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunResult", "StageRecord", "SUMMARY_KEYS"]

#: ``extra`` keys the one-line stage summary prints (value only for ``int8``).
SUMMARY_KEYS = ("fits", "int8")


@dataclass
class StageRecord:
    """What one stage produced: the figures of the table and where its artifact is.

    Attributes:
        index: the stage's position in its recipe, from 1.
        stage: the stage kind (``train``, ``prune``, ``qat``, ``distill``, ``convert``,
            ``check``) or the name a recipe builder gives it (``original``, ``int8``).
        label: the stage as people read it (``"prune (magnitude 80%, polynomial)"``).
        keras_accuracy: test accuracy of the Keras model after the stage (0..1).
        tflite_accuracy: test accuracy of the ``.tflite`` on LiteRT (0..1).
        params: parameters of the Keras model.
        size_bytes: float32 weight bytes of the Keras model, or the ``.tflite`` file's bytes.
        gzip_bytes: the same bytes gzip-compressed (level 9): what sparsity saves.
        sparsity: zeros / kernel weights.
        seconds: wall time of the stage.
        artifact: the file the stage wrote, relative to the run folder (None in memory).
        sha256: the SHA-256 of ``artifact``'s bytes (hex), checked before a resume uses it.
        resumed: the artifact of an earlier run was used instead of running the stage.
        extra: figures of one stage kind (JSON-ready).
        outputs: for a model with several outputs, each output's figure by output name
            (the Keras model's output names): ``{"metric": "accuracy" | "mae", "keras":
            float | None, "tflite": float | None}``, accuracy for a classification output
            and mean absolute error for a regression one, on the same test data as
            ``keras_accuracy`` (which is the first output's). None for one output.
        keras_mae, tflite_mae: the same two for a regression model (its first output's,
            for several outputs): mean absolute error on the test data, in the labels'
            units (``edgeflow.runtime.metrics.score``); None for a classifier.
    """

    index: int
    stage: str
    label: str
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None
    params: int | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    sparsity: float | None = None
    seconds: float = 0.0
    artifact: str | None = None
    sha256: str | None = None
    resumed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict] | None = None
    keras_mae: float | None = None
    tflite_mae: float | None = None

    def to_dict(self) -> dict:
        """The record as a JSON-ready dict (the keys of the attributes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StageRecord:
        """A record from :meth:`to_dict`'s dict; keys this version does not know are kept in ``extra``."""
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.extra = {**{k: v for k, v in data.items() if k not in known}, **record.extra}
        return record

    def summary(self) -> str:
        """One line for the terminal: accuracies, size, sparsity, the stage's own figures, time."""
        parts = []
        if self.keras_accuracy is not None:
            parts.append(f"keras acc {self.keras_accuracy:.4f}")
        if self.tflite_accuracy is not None:
            parts.append(f"tflite acc {self.tflite_accuracy:.4f}")
        if self.keras_mae is not None:
            parts.append(f"keras mae {self.keras_mae:.4f}")
        if self.tflite_mae is not None:
            parts.append(f"tflite mae {self.tflite_mae:.4f}")
        if self.size_bytes is not None:
            gz = f" (gzip {self.gzip_bytes:,} B)" if self.gzip_bytes is not None else ""
            parts.append(f"size {self.size_bytes:,} B{gz}")
        if self.sparsity is not None:
            parts.append(f"sparsity {self.sparsity:.1%}")
        parts.extend(f"{v}" if k == "int8" else f"{k} {v}" for k, v in self.extra.items()
                     if k in SUMMARY_KEYS)
        for name, figures in (self.outputs or {}).items():
            values = [f"{side} {figures[side]:.4f}" for side in ("keras", "tflite")
                      if figures.get(side) is not None]
            parts.append(f"{name} {figures['metric']} " + " / ".join(values))
        parts.append(f"{self.seconds:.1f} s" + (" (resumed)" if self.resumed else ""))
        notes = [self.extra["reconverted"]] if self.extra.get("reconverted") else []
        return (", ".join(parts) + "".join(f"\n  warning: {w}" for w in self.extra.get("warnings", []))
                + "".join(f"\n  note: {n}" for n in notes))


@dataclass
class RunResult:
    """The outcome of running a recipe's stages.

    Attributes:
        recipe: the recipe's name.
        output_dir: the run folder (None for a run in memory).
        records: one :class:`StageRecord` per stage, in order.
        check: the ``edgeflow.devices.Report`` of the check stage, if any.
        model: the Keras model after the last stage that changed it (not serialised).
        tflite: the ``.tflite`` bytes of the last convert stage, if any (not serialised).
        comparison: the first stage's accuracy (a regression model's MAE, in percent
            added) against the run's last one, with the recipe's ``max_drop``
            (``edgeflow.runtime.metrics.Comparison``), or None; for a model with several
            outputs, the first output's figure.
        comparisons: for a model with several outputs, each output's comparison by output
            name, with its own metric (accuracy in points, MAE in percent added), or None.
    """

    recipe: str
    output_dir: str | None
    records: list[StageRecord]
    check: Any = None
    model: Any = field(default=None, repr=False, compare=False)
    tflite: bytes | None = field(default=None, repr=False, compare=False)
    comparison: Any = None  # edgeflow.runtime.metrics.Comparison: first vs last accuracy
    comparisons: dict[str, Any] | None = None  # the same per output, by output name

    @property
    def exit_code(self) -> int:
        """0 when the model fits every checked device (or nothing was checked), every int8
        convert stage gave a full-int8 model and the accuracy or MAE (every output's figure,
        for several outputs) dropped no more than the recipe's ``max_drop``; else 1."""
        from edgeflow.runtime.metrics import shown

        over = any(c.over_limit for c in shown(self.comparison, self.comparisons))
        not_int8 = any(r.extra.get("int8_ok") is False for r in self.records)
        return max(self.check.exit_code if self.check is not None else 0, int(over or not_int8))

    def stage(self, name: str) -> StageRecord:
        """The first record whose ``stage`` is ``name``.

        Raises:
            KeyError: no stage of that name.
        """
        for record in self.records:
            if record.stage == name:
                return record
        raise KeyError(f"no stage {name!r}; stages: {', '.join(r.stage for r in self.records)}")

    def artifact_path(self, record: StageRecord) -> Path | None:
        """Where ``record``'s artifact is: its name inside the run folder (None in memory)."""
        if not record.artifact or self.output_dir is None:
            return None
        return Path(self.output_dir) / record.artifact

    def render_comparisons(self) -> str:
        """The run's comparison (each output's, for several outputs) and the ``warning:``
        line of each over ``max_drop`` (:func:`edgeflow.runtime.metrics.render_shown`)."""
        from edgeflow.runtime.metrics import render_shown

        return render_shown(self.comparison, self.comparisons)

    def warnings(self) -> list[str]:
        """Every stage's warnings (``extra["warnings"]``: pruned zeros, clipped int8 outputs,
        float ops left), in stage order, as ``warning: ...`` lines."""
        return [f"warning: {w}" for r in self.records for w in r.extra.get("warnings", [])]

    def to_dict(self) -> dict:
        """The JSON-ready result (``report.json``): stages, per-device results, ``fits_all``."""
        return {
            "recipe": self.recipe,
            "output_dir": self.output_dir,
            "stages": [r.to_dict() for r in self.records],
            "devices": self.check.to_dict()["results"] if self.check is not None else [],
            "fits_all": None if self.check is None else self.check.fits,
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "comparisons": None if self.comparisons is None else {
                name: c.to_dict() for name, c in self.comparisons.items()},
        }
