"""Running a recipe: each stage calls the library function of its kind, in order.

The pipeline holds no compression logic of its own: ``train`` is a Keras fit,
``prune`` is :func:`edgeflow.prune.magnitude` / :func:`edgeflow.prune.structured`,
``qat`` is :func:`edgeflow.quantize.qat`, ``distill`` is :func:`edgeflow.distill.distill`,
``convert`` is :func:`edgeflow.convert.convert` and ``check`` is
:func:`edgeflow.devices.check`. After every stage it records accuracy, size and sparsity
and writes the stage's artifact to the output directory, so a run can be resumed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeflow import _io
from edgeflow.errors import EdgeflowError, closest
from edgeflow.recipe import STAGE_TYPES, Recipe, load_recipe
from edgeflow.records import RunResult, StageRecord

__all__ = ["check_recipe", "run_recipe", "run_stages", "RunResult", "StageRecord"]


@dataclass
class _Data:
    """The run's arrays; samples are one array, or a list in input order (several inputs:
    a dict by input name until :func:`_check_fit` orders it); labels are one array, or a
    list in output order (several outputs)."""

    x_train: np.ndarray | list[np.ndarray]
    y_train: np.ndarray | list[np.ndarray]
    x_val: np.ndarray | list[np.ndarray] | None
    y_val: np.ndarray | list[np.ndarray] | None
    x_test: np.ndarray | list[np.ndarray]
    y_test: np.ndarray | list[np.ndarray]
    calibration: np.ndarray | list[np.ndarray]

    @property
    def validation(self):
        return None if self.x_val is None else (self.x_val, self.y_val)


@dataclass
class _State:
    recipe: Recipe
    out: Path | None  # the run folder; None runs in memory (no artifacts)
    data: _Data
    model: Any = None
    tflite: bytes | None = None  # the converted model, once a convert stage ran
    tflite_path: Path | None = None  # ... and its file, in a run folder
    models_after: dict[str, Any] = field(default_factory=dict)  # stage kind -> model after it
    teachers: dict[str, Any] = field(default_factory=dict)  # teacher file -> model (loaded up front)
    check: Any = None
    output_names: list[str] = field(default_factory=list)  # the first model's, for per-output figures


def run_recipe(
    recipe: Recipe | str | Path,
    *,
    output_dir: str | Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    resume: bool | str = False,
    force: bool = False,
    verbose: int = 1,
    echo: Callable[[str], None] = print,
) -> RunResult:
    """Run every stage of a recipe and write artifacts plus ``report.json``/``report.html``.

    Every run gets its own folder: ``<runs>/<run id>`` (a UTC time, ``20261206-194102``;
    ``<runs>`` is the recipe's ``output_dir``, default ``runs/<name>``), and
    ``<runs>/latest`` links to the newest. ``output_dir`` names the run folder instead.

    Args:
        recipe: a Recipe, a recipe file, or the name of a shipped recipe.
        output_dir: the run folder: new or empty, or (with ``resume`` or ``force``) one
            edgeflow created.
        overrides: ``dotted.key=value`` strings applied before validation.
        resume: ``True`` continues the latest run (or the run in ``output_dir``), a string
            names the run (a run id under ``<runs>``, or a run folder). A stage's artifact
            is reused when the recipe up to the stage is unchanged and the file's SHA-256 is
            the one recorded; otherwise the stage and all after it run again, and the
            terminal and the record (``extra["not_resumed"]``) say why.
        force: run again in an ``output_dir`` that holds an earlier run, replacing its files.
        verbose: 0 silent, 1 a line per stage and per epoch.
        echo: where progress lines go.

    Raises:
        EdgeflowError: a bad recipe, name or path (see :func:`check_recipe`), an output
            folder edgeflow may not write, or a run to resume that does not exist; all
            before any work and before any folder is created.

    Example:
        >>> result = run_recipe("recipes/quickstart.yaml")
        >>> result.output_dir
        'runs/quickstart/20261206-194102'
    """
    recipe = _recipe(recipe, overrides)
    out, runs = _run_folder(recipe, output_dir, resume, force)
    state = _prepare(recipe, seed=True)  # every name and path checked: nothing is written before this
    say = echo if verbose else (lambda _msg: None)
    if out is None:
        out = _new_run(runs)
        if resume:
            say(f"edgeflow: no earlier run of {recipe.name} in {runs}: starting a new run")
    else:
        _io.claim_dir(out, force=True)  # checked by _run_folder
    for stale in _io.clean_stale(out):
        say(f"edgeflow: removed {stale}, left by an interrupted run")
    state.out = out
    say(f"edgeflow: {recipe.name}: {len(recipe.stages)} stages, output in {out}")
    from edgeflow.keras3 import translation_of

    if (translated := translation_of(state.model)) is not None:
        say(f"model {recipe.model.path}: {translated.summary()}")
    result = _run(state, resume=bool(resume), verbose=verbose, say=say)
    from edgeflow import report

    _io.write_text(out / "report.json", json.dumps(result.to_dict(), indent=2, default=str))
    _io.write_text(out / "report.html", report.render_run_html(result))
    if verbose:
        echo(report.render_run_table(result))
        echo(f"artifacts and report.json/report.html in {out}")
    return result


def check_recipe(recipe: Recipe | str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Check everything a run of ``recipe`` needs, as :func:`run_recipe` does before any work.

    Beyond the schema (:func:`edgeflow.recipe.load_recipe`): the model builder's name or the
    model file (loaded, with the Lambda refusal), the data file, its array names and that
    its samples fit the model's input and its labels the model's outputs, every teacher
    file, the layer names of feature/attention pairs, and every board name and profile
    folder of a check stage, and the ``search:`` section's keys, ranges and board
    (:func:`edgeflow.search.check_section`). Nothing is trained and nothing is written.
    This is what ``edgeflow validate`` runs.

    Returns:
        The validated :class:`~edgeflow.recipe.Recipe`.

    Raises:
        EdgeflowError: one line naming the recipe file, the key and what to do.

    Example:
        >>> check_recipe("recipes/quickstart.yaml").name
        'quickstart'
    """
    recipe = _recipe(recipe, overrides)
    _prepare(recipe)
    if recipe.search is not None:
        from edgeflow.search import check_section

        check_section(recipe)
    return recipe


def run_stages(
    recipe: Recipe,
    model,
    data,
    test_data,
    *,
    validation_data=None,
    verbose: int = 0,
    echo: Callable[[str], None] = print,
) -> RunResult:
    """Run a recipe's stages in memory on a given model and data (no files are written).

    The recipe's ``model``, ``data`` and ``seed`` are not used: ``model`` is the start of
    the first stage and the random state is the caller's. A ``train`` stage of 0 epochs
    only measures the model.

    Args:
        recipe: the stages to run (validated).
        model: a Keras 2 model or a model file; a ``train`` stage of more than 0 epochs
            trains it in place, every other stage returns a new model.
        data: ``(x, y)`` training arrays; the first ``recipe.data.calibration_samples``
            rows of ``x`` are the representative dataset of an int8 convert stage. For a
            model with several inputs ``x`` is a list in input order or a dict by input
            name (checked: :func:`edgeflow.data.in_input_order`); for several outputs ``y``
            is a list, one array per output in output order.
        test_data: ``(x, y)`` arrays every stage's accuracy is measured on (several outputs:
            each output is scored too, ``StageRecord.outputs``).
        validation_data: ``(x, y)`` arrays for the training stages' validation, or None.
        verbose, echo: as in :func:`run_recipe`.

    Returns:
        A :class:`RunResult` with ``output_dir`` None; ``model`` and ``tflite`` hold the
        last Keras model and the last ``.tflite`` bytes.

    Example:
        >>> result = run_stages(recipe, model, (x, y), (x_test, y_test))
        >>> result.stage("convert").tflite_accuracy
    """
    from edgeflow.data import as_labels, in_input_order
    from edgeflow.models import load_model

    model = load_model(model)
    x, y = in_input_order(model, data[0]), as_labels(data[1])
    xt, yt = in_input_order(model, test_data[0], "test data"), as_labels(test_data[1])
    xv, yv = (None, None) if validation_data is None else (
        in_input_order(model, validation_data[0], "validation data"), as_labels(validation_data[1]))
    calibration = _rows(x, slice(0, recipe.data.calibration_samples))
    state = _State(recipe=recipe, out=None, data=_Data(x, y, xv, yv, xt, yt, calibration))
    state.model = model
    state.output_names = list(state.model.output_names)
    return _run(state, resume=False, verbose=verbose, say=echo if verbose else (lambda _msg: None))


def _run(state: _State, *, resume: bool, verbose: int, say: Callable[[str], None]) -> RunResult:
    """Run (or resume) every stage of ``state.recipe``; the one loop over stages."""
    recipe, out = state.recipe, state.out
    records: list[StageRecord] = []
    done = _read_manifest(out) if out is not None else {}
    for i, spec in enumerate(recipe.stages, start=1):
        key = _stage_key(recipe, i)
        label = _label(spec)
        say(f"[{i}/{len(recipe.stages)}] {label}")
        start = time.perf_counter()
        record, why_not = _resume(state, i, spec, key, done.get(str(i))) if resume else (None, None)
        if record is None:
            resume = False  # a stage that ran changes what every later stage gets
            if why_not:
                say(f"      not resumed: {why_not}; running the stage again")
            if out is not None:  # what later stages made came from this stage's old output
                done = {k: v for k, v in done.items() if int(k) < i}
                _io.write_text(out / "stages.json", json.dumps(done, indent=2))
            record = _run_stage(state, spec, i, label, verbose)
            if why_not:
                record.extra["not_resumed"] = why_not
        record.seconds = round(time.perf_counter() - start, 2)
        records.append(record)
        if record.artifact and out is not None and not record.resumed:
            record.sha256 = _sha256(out / record.artifact)
            done[str(i)] = {"key": key, "record": record.to_dict()}
            _io.write_text(out / "stages.json", json.dumps(done, indent=2))
        say("      " + record.summary())
        state.models_after.setdefault(spec.stage, state.model)
    comparison, comparisons = _comparisons(records, recipe.max_drop,
                                           f"the recipe's test data, {_count(state.data.x_test)} samples")
    result = RunResult(recipe.name, None if out is None else str(out), records, state.check,
                       model=state.model, tflite=state.tflite, comparison=comparison,
                       comparisons=comparisons)
    if compared := result.render_comparisons():
        say(compared)
    return result


def _comparisons(records: list[StageRecord], max_drop: float, data: str):
    """The run's first figure against its last one, with the recipe's ``max_drop``: the
    first output's accuracy (``keras_accuracy``/``tflite_accuracy``) or, for a regression
    model, its MAE (``keras_mae``/``tflite_mae``), and for a model with several outputs
    each output by name (``StageRecord.outputs``) with its own metric: accuracy in points,
    MAE in percent added (:class:`edgeflow.runtime.metrics.Comparison`).

    Returns:
        ``(comparison, comparisons)``: a Comparison or None, and a dict by output name or
        None for one output. A figure without a first and a later stage has none.
    """
    comparison = (_compare(records, lambda r: (r.keras_accuracy, r.tflite_accuracy), "accuracy",
                           max_drop, data)
                  or _compare(records, lambda r: (r.keras_mae, r.tflite_mae), "mae", max_drop, data))
    names = next((r.outputs for r in records if r.outputs), None)
    if names is None:
        return comparison, None
    comparisons = {}
    for name, figures in names.items():
        def of_output(r, name=name):
            f = (r.outputs or {}).get(name) or {}
            return f.get("keras"), f.get("tflite")
        if (c := _compare(records, of_output, figures["metric"], max_drop, data, name)) is not None:
            comparisons[name] = c
    return comparison, comparisons or None


def _compare(records: list[StageRecord], figures: Callable, metric: str, max_drop: float, data: str,
             output: str | None = None):
    """One figure's Comparison: the first stage's Keras figure against the run's last one
    (the last ``.tflite`` if a stage converted, else the last Keras model), or None without
    both. ``figures(record)`` gives the record's ``(keras, tflite)`` figure, each None or a float."""
    from edgeflow.runtime.metrics import Comparison

    first = next((r for r in records if figures(r)[0] is not None), None)
    last = next((r for r in reversed(records) if any(v is not None for v in figures(r))), None)
    if first is None or last is None or last is first:
        return None
    keras, tflite = figures(last)
    result, kind = (tflite, ".tflite") if tflite is not None else (keras, "Keras model")
    return Comparison({metric: figures(first)[0]}, {metric: result},
                      f"Keras model after stage {first.index} ({first.stage})",
                      f"{kind} after stage {last.index} ({last.stage})", data, max_drop,
                      output=output, limit="max_drop")


def _run_stage(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    """One stage; a training stage inside the recipe's ``tf.distribute`` strategy, if any."""
    if spec.stage not in _TRAINING or state.recipe.distribute is None:
        return _RUNNERS[spec.stage](state, spec, index, label, verbose)
    from edgeflow import distribute
    from edgeflow._keras import tfmot
    from edgeflow.models import copy_model
    from edgeflow.quantize import custom_objects

    with tfmot.quantization.keras.quantize_scope(custom_objects()):
        with distribute.scope(state.recipe.distribute) as strategy:
            state.model = copy_model(state.model)  # its variables are the strategy's
            record = _RUNNERS[spec.stage](state, spec, index, label, verbose)
        # plain variables again: the converter cannot take the strategy's collective ops
        state.model = copy_model(state.model)
    record.extra["replicas"] = strategy.num_replicas_in_sync
    return record


# ---------------------------------------------------------------- run folders


def _run_folder(recipe: Recipe, output_dir, resume: bool | str, force: bool) -> tuple[Path | None, Path]:
    """The run folder to use (None: a new one under the runs folder, made later) and the
    runs folder; checked before any work, nothing created."""
    runs = Path(recipe.output_dir or f"runs/{recipe.name}")
    if resume == "latest":
        resume = True
    if output_dir is not None:
        if isinstance(resume, str):
            raise EdgeflowError("give the run to resume with --resume RUN or with --output-dir, not both")
        out = Path(output_dir)
        if (out / "stages.json").is_file() and not (resume or force):
            raise EdgeflowError(
                f"{out} holds an earlier run: pass --resume to continue it, --force to run again "
                "over its files, or choose another folder"
            )
        _io.check_dir(out, force=True)  # a file, or a folder edgeflow did not create
        return out, runs
    if not resume:
        return None, runs
    if resume is True:
        latest = runs / "latest"
        return (latest.resolve() if latest.is_dir() else None), runs
    for out in (Path(resume), runs / resume):
        if out.is_dir() and (out / _io.MARKER).is_file():
            return out, runs
    known = sorted(p.name for p in runs.iterdir() if not p.is_symlink() and (p / _io.MARKER).is_file()
                   and (p / "stages.json").is_file()) if runs.is_dir() else []
    raise EdgeflowError(
        f"no run {resume!r} to resume in {runs}{closest(str(resume), known)}; "
        + (f"runs: {', '.join(known)}" if known else "run it without --resume first")
    )


def _new_run(runs: Path) -> Path:
    """Create ``runs/<UTC time>`` (``-2``, ``-3``... when taken) and point ``runs/latest`` at it."""
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1, 1000):
        out = runs / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            out.mkdir()
            break
        except FileExistsError:
            continue
    _io.claim_dir(out)
    latest = runs / "latest"
    if latest.is_symlink() or not latest.exists():  # never replace a user's file or folder
        link = runs / f".latest.{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(out.name, target_is_directory=True)
        os.replace(link, latest)
    return out


# ---------------------------------------------------------------- checks before any work


def _recipe(recipe: Recipe | str | Path, overrides) -> Recipe:
    if isinstance(recipe, Recipe):
        if overrides:
            raise EdgeflowError("overrides apply to recipe files; change the Recipe object instead")
        return recipe
    return load_recipe(recipe, overrides)


class _Where:
    """Prefix an EdgeflowError raised inside the block with the recipe file and the key."""

    def __init__(self, recipe: Recipe, key: str):
        self.prefix = f"{recipe.source}: {key}: "

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, EdgeflowError) and not str(err).startswith(self.prefix):
            raise type(err)(self.prefix + str(err)) from err
        return False


def _prepare(recipe: Recipe, *, seed: bool = False) -> _State:
    """Load the data and the model and check every name and path of the recipe (no output).

    The cheap checks (board names, files that must exist) come first, so a typo is
    reported in a moment, before TensorFlow is imported. ``seed``: set Keras's random
    seed to the recipe's before the model is built, and build it in the recipe's
    ``tf.distribute`` strategy (a run; not a check).
    """
    for i, spec in enumerate(recipe.stages):
        if spec.stage == "check":
            _check_devices(recipe, i, spec)
        if spec.stage == "distill" and spec.teacher not in STAGE_TYPES:
            with _Where(recipe, f"stages.{i}.teacher"):
                if not Path(spec.teacher).exists():
                    raise EdgeflowError(
                        f"teacher {spec.teacher!r} is neither a stage before it ("
                        + ", ".join(s.stage for s in recipe.stages[:i]) + ") nor an existing model file"
                    )
    if recipe.model.path and not Path(recipe.model.path).exists():  # before TensorFlow loads
        with _Where(recipe, "model.path"):
            raise EdgeflowError(f"model file {recipe.model.path!r} does not exist")
    with _Where(recipe, "data.path" if recipe.data.source == "npz" else "data"):
        data = _load_data(recipe)
    from edgeflow import distribute

    if recipe.distribute is not None and recipe.distribute.strategy == "multi_worker":
        distribute.check_tf_config()
    if seed:
        from edgeflow._keras import keras

        distribute.strategy(recipe.distribute)  # before any other TensorFlow operation (multi_worker)
        keras.utils.set_random_seed(recipe.seed)
    with _Where(recipe, "model.path" if recipe.model.path else "model.builder"):
        # a run builds the model in the strategy's scope; checking alone creates no strategy
        with distribute.scope(recipe.distribute) if seed else contextlib.nullcontext():
            model = _build_model(recipe)
    with _Where(recipe, "data.path" if recipe.data.source == "npz" else "data"):
        data = _check_fit(model, data)
    state = _State(recipe=recipe, out=None, data=data, model=model,
                   output_names=list(model.output_names))
    for i, spec in enumerate(recipe.stages):
        if spec.stage != "distill":
            continue
        if spec.teacher not in STAGE_TYPES and spec.teacher not in state.teachers:
            with _Where(recipe, f"stages.{i}.teacher"):
                state.teachers[spec.teacher] = _load(spec.teacher, False, recipe.model.custom_objects)
        # Layer names are the model's until a qat stage renames them (quant_...).
        renamed = "qat" in [s.stage for s in recipe.stages[:i]]
        teacher = state.teachers.get(spec.teacher, None if renamed else model)
        with _Where(recipe, f"stages.{i}"):  # the same inputs, of the same shapes
            from edgeflow.distill.distiller import _check_inputs

            _check_inputs(model, model if teacher is None else teacher)
        for key in ("feature_pairs", "attention_pairs"):
            with _Where(recipe, f"stages.{i}.{key}"):
                _check_pairs(getattr(spec, key), teacher, None if renamed else model)
    return state


def _check_devices(recipe: Recipe, index: int, spec) -> None:
    from edgeflow.devices import get_device, load_devices

    with _Where(recipe, f"stages.{index}.devices_dir"):
        load_devices(spec.devices_dir)  # the folder and every profile in it
    with _Where(recipe, f"stages.{index}.devices"):
        for name in [] if spec.devices == "all" else spec.devices:
            if name != "all":
                get_device(name, spec.devices_dir)


def _check_fit(model, data: _Data) -> _Data:
    """The samples fit the model's inputs; every value is a finite number; the labels fit its
    outputs (:func:`edgeflow.data.check_labels`: one per sample, class indices within the
    output units). Samples by input name (``x:<name>`` in a ``.npz``) come back as lists in
    the model's input order, labels by output name (``y:<name>``) as lists in its output order."""
    from edgeflow.data import (
        check_labels,
        check_values,
        in_input_order,
        in_output_order,
        input_names,
    )

    for key in ("x_train", "x_val", "x_test", "calibration"):
        if getattr(data, key) is not None:
            setattr(data, key, in_input_order(model, getattr(data, key)))
    names = list(model.output_names)
    for key in ("y_train", "y_val", "y_test"):
        y = getattr(data, key)
        if isinstance(y, dict):
            setattr(data, key, in_output_order(y, names))
        elif y is not None and len(names) > 1:
            raise EdgeflowError(
                f"the model has {len(names)} outputs ({', '.join(names)}) but one label array: "
                "save one array per output in the .npz, as y:<output name>")
    inputs = input_names(model)
    for split, x, y in (("training", data.x_train, data.y_train), ("test", data.x_test, data.y_test),
                        ("validation", data.x_val, data.y_val)):
        if x is None:
            continue
        for name, arr in zip(inputs, x if len(inputs) > 1 else [x], strict=True):
            check_values(arr, f"x{':' + name if len(inputs) > 1 else ''} of the {split} split")
        check_labels(model, y, _count(x), f"{split} split")
    return data


def _rows(a, index):
    """``index``'s rows (an index array or a slice) of samples or labels: one array, a dict
    of arrays by input/output name, or a list of arrays (several inputs or outputs)."""
    if isinstance(a, dict):
        return {k: v[index] for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return [v[index] for v in a]
    return a[index]


def _count(x) -> int:
    """The number of samples in ``x``: one array, or a dict/list of arrays (one per input)."""
    first = next(iter(x.values())) if isinstance(x, dict) else x[0] if isinstance(x, (list, tuple)) else x
    return len(first)


def _check_pairs(pairs: dict[str, str] | None, teacher, student) -> None:
    """Every layer a feature/attention pair names exists (teacher side, student side; a
    model given as None is not checked)."""
    for side, model, names in (("teacher", teacher, (pairs or {}).keys()),
                               ("student", student, (pairs or {}).values())):
        if model is None:
            continue
        layers = [layer.name for layer in model.layers]
        for name in names:
            if name not in layers:
                raise EdgeflowError(f"the {side} has no layer {name!r}{closest(name, layers)}")


def _load(path: str, unsafe: bool, custom_objects: str | None = None):
    from edgeflow.models import load_model, read_custom_objects

    # the recipe's schema has checked that custom_objects comes with unsafe: true
    objects = read_custom_objects(custom_objects, safe_mode=False) if custom_objects else None
    return load_model(path, safe_mode=not unsafe, custom_objects=objects)


# ---------------------------------------------------------------- data and model


def _load_data(recipe: Recipe) -> _Data:
    from edgeflow import data as data_mod

    spec = recipe.data
    if spec.source == "digits":
        (x_tr, y_tr), (x_te, y_te) = data_mod.digits(spec.test_fraction, seed=recipe.seed)
    else:
        x_tr, y_tr, x_te, y_te = _npz_splits(Path(spec.path), spec.test_fraction, recipe.seed)
    x_val = y_val = None
    if spec.validation_fraction > 0:
        n_val = max(1, int(_count(x_tr) * spec.validation_fraction))
        order = np.random.default_rng(recipe.seed).permutation(_count(x_tr))
        val, train = order[:n_val], order[n_val:]
        x_tr, y_tr, x_val, y_val = _rows(x_tr, train), _rows(y_tr, train), _rows(x_tr, val), _rows(y_tr, val)
    return _Data(x_tr, y_tr, x_val, y_val, x_te, y_te, _rows(x_tr, slice(0, spec.calibration_samples)))


def _npz_splits(path: Path, test_fraction: float, seed: int):
    """``(x_train, y_train, x_test, y_test)`` from a recipe's ``.npz``: ``x``/``y`` split
    here, or the ``x_train``/``y_train``/``x_test``/``y_test`` split form. Several inputs:
    ``x:<input name>`` (``x_train:<name>``, ``x_test:<name>``) give a dict by input name;
    several outputs: ``y:<output name>`` (...) give a dict by output name."""
    from edgeflow.data import by_name, read_arrays

    f = read_arrays(path)
    f = f if isinstance(f, dict) else {}  # a .npy: one array, no labels
    keys = set(f)

    def arrays(prefix):  # one array, or a dict by input/output name (x:<name>, y_train:<name>...)
        return by_name(f, prefix) or (f[prefix] if prefix in keys else None)

    x_train, y_train, x_test, y_test = (arrays(k) for k in ("x_train", "y_train", "x_test", "y_test"))
    if all(a is not None for a in (x_train, y_train, x_test, y_test)):
        return x_train, y_train, x_test, y_test
    x, y = arrays("x"), arrays("y")
    if x is None or y is None:
        raise EdgeflowError(
            f"{path} needs arrays x and y (or x_train, y_train, x_test, y_test; several "
            "inputs: one x:<input name> per input; several outputs: one y:<output name> per "
            "output); it has " + (", ".join(sorted(keys)) or "one array (a .npy file)")
        )
    named = {**_keyed("x", x), **_keyed("y", y)}
    (first, n), *rest = ((k, len(v)) for k, v in named.items())
    for key, count in rest:
        if count != n:
            raise EdgeflowError(f"{path}: {first} has {n} samples but {key} has {count}: every "
                                "array needs one row per sample")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(n * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return _rows(x, train), _rows(y, train), _rows(x, test), _rows(y, test)


def _keyed(prefix: str, arrays) -> dict[str, np.ndarray]:
    """The ``.npz`` keys of one array or of a dict by name: ``{"x": a}`` or ``{"x:img": a, ...}``."""
    if isinstance(arrays, dict):
        return {f"{prefix}:{k}": v for k, v in arrays.items()}
    return {prefix: arrays}


def _build_model(recipe: Recipe):
    from edgeflow import models

    spec = recipe.model
    if spec.path:
        return _load(spec.path, spec.unsafe, spec.custom_objects)
    return models.build(spec.builder, **spec.kwargs)


# ---------------------------------------------------------------- stages


def _train(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow._keras import keras
    from edgeflow.models import default_loss, default_metrics

    d = state.data
    model = state.model
    if spec.epochs:  # 0 epochs: the model is only measured (and not compiled)
        model.compile(
            keras.optimizers.Adam(spec.learning_rate), default_loss(model, spec.loss, d.y_train),
            metrics=default_metrics(model, spec.loss, d.y_train),
        )
        model.fit(
            d.x_train, d.y_train, epochs=spec.epochs, batch_size=spec.batch_size,
            validation_data=d.validation, verbose=0, callbacks=_epoch_callbacks(label, verbose),
        )
    return _keras_record(state, index, "train", label, model)


def _prune(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow import prune
    from edgeflow._keras import keras
    from edgeflow.models import default_loss

    d = state.data
    common = dict(
        data=(d.x_train, d.y_train), epochs=spec.epochs, batch_size=spec.batch_size,
        validation_data=d.validation, optimizer=keras.optimizers.Adam(spec.learning_rate),
        loss=default_loss(state.model, spec.loss, d.y_train), verbose=0,
        callbacks=_epoch_callbacks(label, verbose),
    )
    if spec.method == "magnitude":
        result = prune.magnitude(
            state.model, spec.target_sparsity, schedule=spec.schedule,
            initial_sparsity=spec.initial_sparsity, begin_step=spec.begin_step,
            end_step=spec.end_step, frequency=spec.frequency, per_layer=spec.per_layer,
            m_by_n=spec.m_by_n, policy=spec.policy, **common,
        )
    else:
        result = prune.structured(
            state.model, spec.ratio, criterion=spec.criterion, steps=spec.steps,
            max_accuracy_drop=spec.max_accuracy_drop, multiple_of=spec.multiple_of,
            num_samples=spec.num_samples, **common,
        )
    state.model = result.model
    record = _keras_record(state, index, "prune", label, result.model)
    if getattr(result, "skipped_layers", None):
        record.extra["skipped_layers"] = list(result.skipped_layers)
    return record


def _cluster(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow.cluster import cluster

    d = state.data
    result = cluster(
        state.model, spec.clusters, per_layer=spec.per_layer, init=spec.init,
        data=(d.x_train, d.y_train), epochs=spec.epochs, batch_size=spec.batch_size,
        learning_rate=spec.learning_rate, qat=spec.qat,
        preserve_sparsity=None if spec.preserve_sparsity == "auto" else spec.preserve_sparsity,
    )
    state.model = result.model
    record = _keras_record(state, index, "cluster", label, result.model)
    record.extra["distinct_values"] = result.distinct_values
    if result.skipped_layers:
        record.extra["skipped_layers"] = list(result.skipped_layers)
    return record


def _qat(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow import quantize
    from edgeflow.models import default_loss

    d = state.data
    result = quantize.qat(
        state.model, data=(d.x_train, d.y_train), epochs=spec.epochs, batch_size=spec.batch_size,
        validation_data=d.validation, learning_rate=spec.learning_rate,
        loss=default_loss(state.model, spec.loss, d.y_train), preserve_sparsity=spec.preserve_sparsity,
        verbose=0, callbacks=_epoch_callbacks(label, verbose),
    )
    state.model = result.model
    record = _keras_record(state, index, "qat", label, result.model)
    if result.float_layers:
        record.extra["float_layers"] = list(result.float_layers)
    if result.warnings:
        record.extra["warnings"] = list(result.warnings)
    return record


def _distill(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow.distill.distiller import distill
    from edgeflow.models import load_model

    teacher = state.models_after.get(spec.teacher)
    if teacher is None:
        teacher = state.teachers.get(spec.teacher) or load_model(spec.teacher)
    d = state.data
    result = distill(
        state.model, teacher, data=(d.x_train, d.y_train), losses=spec.losses,
        epochs=spec.epochs, batch_size=spec.batch_size, temperature=spec.temperature,
        alpha=spec.alpha, feature_pairs=spec.feature_pairs, attention_pairs=spec.attention_pairs,
        learning_rate=spec.learning_rate, preserve_sparsity=spec.preserve_sparsity,
        validation_data=d.validation, verbose=0, callbacks=_epoch_callbacks(label, verbose),
        hard_loss=spec.loss,
    )
    state.model = result.model
    return _keras_record(state, index, "distill", label, result.model)


def _convert(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow.convert import convert, is_quantization_aware, to_c_array
    from edgeflow.runtime import litert, metrics

    d = state.data
    reconverted: list[str] = []  # a line when the int8 file took more than one conversion
    if is_quantization_aware(state.model) and spec.mode == "int8":
        from edgeflow.quantize.stage import qat_to_int8

        tflite, _ = qat_to_int8(state.model, d.calibration, num_samples=_count(d.calibration),
                                input_type=spec.input_type, output_type=spec.output_type,
                                notes=reconverted)
    else:
        tflite = convert(
            state.model, spec.mode, d.calibration, input_type=spec.input_type,
            output_type=spec.output_type, num_samples=_count(d.calibration), notes=reconverted,
        )
    lut = None
    if spec.lut:
        from edgeflow.tflite import slim
        from edgeflow.tflite.lut import compress_tables

        tflite, lut = compress_tables(slim(tflite, for_tflm=True)[0], max_arena=spec.lut_max_arena)
        tflite = slim(tflite, for_tflm=True)[0]
    state.tflite = tflite
    record = StageRecord(index, "convert", label)
    if reconverted:
        record.extra["reconverted"] = reconverted[-1]
    if lut is not None:
        record.extra["lut"] = f"{len(lut.compressed)} tensors in tables, {len(lut.left)} left"
    if state.out is not None:
        name = f"{index:02d}-{state.recipe.name}-{spec.mode}"
        state.tflite_path = _io.write_bytes(state.out / f"{name}.tflite", tflite)
        record.artifact = state.tflite_path.name
    keras_scored = metrics.evaluate_keras(state.model, d.x_test, d.y_test)
    if lut is not None and lut.compressed:  # DECODE is TFLM's own operator: LiteRT has none
        from edgeflow.runtime import tflm

        tflite_scored = metrics.score(tflm.predict(tflite, d.x_test), d.y_test)
    else:
        tflite_scored = litert.evaluate(tflite, d.x_test, d.y_test)
    record.keras_accuracy, record.keras_mae = keras_scored.get("accuracy"), keras_scored.get("mae")
    record.tflite_accuracy, record.tflite_mae = tflite_scored.get("accuracy"), tflite_scored.get("mae")
    record.outputs = metrics.by_output(state.output_names, keras=keras_scored, tflite=tflite_scored)
    record.size_bytes = len(tflite)
    record.gzip_bytes = len(gzip.compress(tflite, 9))
    record.sparsity = _sparsity(state.model)
    if spec.mode == "int8":  # QAT exports can keep a float op or a (de)quantize pair
        from edgeflow.quantize import clipping_warnings, verify_int8

        check = verify_int8(tflite)
        record.extra["int8"] = check.summary()
        # Clipping is measured against the float model (a QAT model's outputs are clipped too).
        float_model = next((m for m in reversed(list(state.models_after.values()))
                            if not is_quantization_aware(m)), state.model)
        warnings = clipping_warnings(tflite, float_model, d.x_test)
        if not check.ok:  # int8 was promised: the run exits 1 (RunResult.exit_code)
            record.extra["int8_ok"] = False
            warnings.insert(0, "mode int8 promised a full-int8 model; float ops: "
                            + "; ".join(check.float_ops + check.stray_conversions))
        if warnings:
            record.extra["warnings"] = warnings
    if spec.c_array and state.out is not None:
        from edgeflow.tflite import slim

        cname = "g_" + "".join(c if c.isalnum() else "_" for c in state.recipe.name) + "_model"
        # the C array goes to TFLM only, as export --format c writes it (slim tflm_only)
        header, source = to_c_array(slim(tflite, tflm_only=True)[0], cname, header_name="model_data.h")
        _io.write_text(state.out / "model_data.h", header)
        _io.write_text(state.out / "model_data.cc", source)
        record.extra["c_array"] = "model_data.cc"
    return record


def _check(state: _State, spec, index: int, label: str, verbose: int) -> StageRecord:
    from edgeflow.devices import check

    report = check(state.tflite_path or state.tflite, spec.devices, devices_dir=spec.devices_dir, measure=spec.measure,
                   firmware=spec.firmware, firmware_timeout=spec.timeout)
    state.check = report
    fits = sum(1 for r in report.results if r.fits)
    record = StageRecord(index, "check", label)
    record.extra["fits"] = f"{fits}/{len(report.results)} devices"
    return record


_TRAINING = ("train", "prune", "qat", "distill")  # the stages a distribute strategy applies to
_RUNNERS = {
    "train": _train, "prune": _prune, "cluster": _cluster, "qat": _qat, "distill": _distill,
    "convert": _convert, "check": _check,
}


# ---------------------------------------------------------------- records


def _keras_record(state: _State, index: int, stage: str, label: str, model) -> StageRecord:
    from edgeflow.convert import is_quantization_aware
    from edgeflow.models import save_model, weight_bytes
    from edgeflow.runtime import metrics

    d = state.data
    size, packed = weight_bytes(model)
    scored = metrics.evaluate_keras(model, d.x_test, d.y_test)
    record = StageRecord(
        index, stage, label,
        keras_accuracy=scored.get("accuracy"),
        keras_mae=scored.get("mae"),
        params=int(model.count_params()),
        size_bytes=size,
        gzip_bytes=packed,
        sparsity=_sparsity(model),
        outputs=metrics.by_output(state.output_names, keras=scored),
    )

    # tf_keras cannot load a QAT model back from .keras (TF-MOT's QuantizeLayer finds 3 of its
    # 5 variables); .h5 reloads exactly under quantize_scope, so resume can use it.
    suffix = ".h5" if is_quantization_aware(model) else ".keras"
    if state.out is not None:
        record.artifact = save_model(model, state.out / f"{index:02d}-{stage}{suffix}").name
    return record


def _sparsity(model) -> float:
    from edgeflow import prune

    return float(prune.sparsity(model)["overall"])


def _label(spec) -> str:
    if spec.stage == "train":
        return f"train ({spec.epochs} epochs)"
    if spec.stage == "prune":
        if spec.method == "magnitude":
            return f"prune (magnitude {spec.target_sparsity:.0%}, {spec.schedule})"
        ratio = f"{spec.ratio:.0%}" if isinstance(spec.ratio, float) else "per layer"
        return f"prune (structured {ratio}, {spec.criterion})"
    if spec.stage == "qat":
        return f"qat ({spec.epochs} epochs)"
    if spec.stage == "cluster":
        return f"cluster ({spec.clusters} values{', QAT' if spec.qat else ''})"
    if spec.stage == "distill":
        return f"distill ({'+'.join(map(str, spec.losses))} from {spec.teacher})"
    if spec.stage == "convert":
        return f"convert ({spec.mode})"
    return f"check ({spec.devices if isinstance(spec.devices, str) else ', '.join(spec.devices)})"


def _epoch_callbacks(label: str, verbose: int) -> list:
    """A Keras callback printing one line per epoch (the progress of training stages)."""
    if not verbose:
        return []
    from edgeflow._keras import keras

    class _Epochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, float))
            total = self.params.get("epochs", "?")
            print(f"      epoch {epoch + 1}/{total}: {shown}", flush=True)

    return [_Epochs()]


# ---------------------------------------------------------------- resume


def _stage_key(recipe: Recipe, index: int) -> str:
    """A hash of everything that decides a stage's output: model, data, seed, stages up to it."""
    payload = recipe.model_dump(mode="json", include={"model", "data", "seed"})
    payload["stages"] = [s.model_dump(mode="json") for s in recipe.stages[:index]]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_manifest(out: Path) -> dict:
    path = out / "stages.json"
    try:
        done = json.loads(path.read_text()) if path.exists() else {}
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return {}
    return done if isinstance(done, dict) else {}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resume(state: _State, index: int, spec, key: str, entry) -> tuple[StageRecord | None, str | None]:
    """Load a stage's artifact instead of running it, when the recipe up to the stage is
    unchanged and the artifact is the file that was written (same SHA-256).

    Returns ``(record, None)`` when resumed, else ``(None, why not)`` (``why`` is None when
    there was nothing to resume: no entry, or a check stage, which always runs).
    """
    if spec.stage == "check" or not isinstance(entry, dict):
        return None, None
    if entry.get("key") != key:
        return None, "the recipe changed up to this stage"
    try:
        record = StageRecord.from_dict(entry["record"])
    except (KeyError, TypeError):
        return None, "its entry in stages.json is unreadable"
    name = record.artifact or ""
    artifact = state.out / name
    if not name or Path(name).is_absolute() or artifact.resolve().parent != state.out.resolve():
        return None, f"its artifact {name!r} is not a file of this run folder"
    if not artifact.is_file():
        return None, f"{name} is missing"
    if not record.sha256 or _sha256(artifact) != record.sha256:
        return None, f"{name} changed since it was written (SHA-256 differs)"
    if artifact.suffix == ".tflite":
        state.tflite_path = artifact
        state.tflite = artifact.read_bytes()
    else:
        from edgeflow._keras import tfmot
        from edgeflow.models import load_model
        from edgeflow.quantize import custom_objects

        try:
            with tfmot.quantization.keras.quantize_scope(custom_objects()):
                state.model = load_model(artifact)
        except Exception as err:  # noqa: BLE001 - any failure to read it means: run the stage
            return None, f"{name} cannot be loaded ({type(err).__name__})"
    record.resumed = True
    return record, None
