"""Recipes: a YAML file that names a model, data and a chain of stages.

The schema is strict: an unknown key or a bad value is an error that names the file and
the key, raised before any work starts (``edgeflow validate RECIPE`` checks only that).

Example recipe::

    name: quickstart
    model: {builder: digits_cnn}
    data: {source: digits}
    stages:
      - {stage: train, epochs: 10}
      - {stage: prune, method: magnitude, target_sparsity: 0.8}
      - {stage: qat, epochs: 3}
      - {stage: convert, mode: int8}
      - {stage: check, devices: all}

``max_drop`` (default 1) is the largest drop, in points of accuracy, from the first stage's
Keras model to the run's last accuracy (the last ``.tflite``); more makes ``edgeflow run``
warn and exit 1. A regression model is checked on its MAE, in percent added
(``100 · (last - first) / first``, as ``--max-drop`` reads it for a regression model). A
model with several outputs is checked on every output with its own metric: a
classification output in points of accuracy, a regression output in percent of MAE
added; the warning names the output.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeflow import _yaml
from edgeflow.errors import EdgeflowError, closest
from edgeflow.ranges import RANGES, ranged

__all__ = ["Recipe", "SearchSpec", "load_recipe", "parse_recipe", "STAGE_TYPES", "FIGURES"]

PACKAGED = Path(__file__).parent / "_data" / "recipes"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """Where the model comes from: a builder name, a keras.applications class, or a file."""

    builder: str | None = None
    path: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    unsafe: bool = False
    custom_objects: str | None = None  # a .py file defining custom layers (runs: needs unsafe)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.builder is None) == (self.path is None):
            raise ValueError("give exactly one of 'builder' (a name) or 'path' (a model file)")
        if self.custom_objects and not self.unsafe:
            raise ValueError("custom_objects runs that Python file: set 'unsafe: true' too, only if you trust it")
        return self


class DataSpec(_Strict):
    """The data: scikit-learn's digits, or a .npz file with x/y (or x_train/y_train/x_test/y_test)."""

    source: Literal["digits", "npz"] = "digits"
    path: str | None = None
    test_fraction: ranged("test_fraction") = 0.25
    validation_fraction: ranged("validation_fraction") = 0.1
    calibration_samples: ranged("num_samples") = 200

    @model_validator(mode="after")
    def _path_for_npz(self):
        if self.source == "npz" and not self.path:
            raise ValueError("source 'npz' needs 'path'")
        return self


class _Training(_Strict):
    epochs: ranged("epochs") = 2
    batch_size: ranged("batch_size") = 32
    learning_rate: ranged("learning_rate") = 1e-3
    loss: str | None = None  # a Keras loss name; default: edgeflow.models.default_loss's rule


class TrainStage(_Training):
    """Train (or keep training) the model on the training split."""

    stage: Literal["train"]
    epochs: ranged("epochs") = 10


class PruneStage(_Training):
    """Magnitude pruning (TF-MOT) or structured pruning that removes filters."""

    stage: Literal["prune"]
    method: Literal["magnitude", "structured"] = "magnitude"
    # magnitude (TF-MOT)
    target_sparsity: ranged("sparsity") = 0.5
    schedule: Literal["polynomial", "constant"] = "polynomial"
    initial_sparsity: ranged("sparsity") = 0.0
    begin_step: ranged("step") = 0
    end_step: ranged("end_step") | None = None
    frequency: ranged("frequency") | None = None
    per_layer: dict[str, ranged("sparsity")] | None = None
    m_by_n: str | None = Field(None, pattern=r"^\d+:\d+$")
    policy: Literal["xnnpack"] | None = None
    # structured (filters and neurons removed)
    ratio: float | dict[str, float] = 0.5
    criterion: Literal["l1", "l2", "fpgm", "activation", "taylor", "hessian"] = "l1"
    steps: ranged("prune_steps") = 1
    max_accuracy_drop: ranged("accuracy_drop") | None = None
    multiple_of: ranged("multiple_of") = 1
    num_samples: ranged("num_samples") = 256

    @model_validator(mode="after")
    def _ratios(self):
        ratios = self.ratio.values() if isinstance(self.ratio, dict) else [self.ratio]
        bad = [r for r in ratios if not RANGES["ratio"].contains(r)]
        if bad:
            raise ValueError(f"ratio: {RANGES['ratio'].problem(bad[0])}")
        return self


class QatStage(_Training):
    """Quantization-aware training on TF-MOT."""

    stage: Literal["qat"]
    learning_rate: ranged("learning_rate") = 1e-4
    preserve_sparsity: bool | Literal["auto"] = "auto"


class ClusterStage(_Training):
    """Weight clustering (TF-MOT): each kernel keeps ``clusters`` values (edgeflow.cluster)."""

    stage: Literal["cluster"]
    clusters: ranged("clusters") = 16
    per_layer: dict[str, int] | None = None
    init: Literal["kmeans++", "linear", "density", "random"] = "kmeans++"
    learning_rate: ranged("learning_rate") = 1e-4
    qat: bool = False
    preserve_sparsity: bool | Literal["auto"] = "auto"


class DistillStage(_Training):
    """Train the current model (student) from a teacher: the model before a named stage, or a file."""

    stage: Literal["distill"]
    teacher: str = "train"
    losses: tuple[str, ...] = ("soft",)
    temperature: ranged("temperature") = 4.0
    alpha: ranged("alpha") = 0.1
    feature_pairs: dict[str, str] | None = None
    attention_pairs: dict[str, str] | None = None
    preserve_sparsity: bool | Literal["auto"] = "auto"


class ConvertStage(_Strict):
    """Convert to a .tflite flatbuffer."""

    stage: Literal["convert"]
    mode: Literal["int8", "int16x8", "float16", "dynamic", "float32"] = "int8"
    input_type: str | None = None
    output_type: str | None = None
    c_array: bool = False
    #: TFLM table compression of clustered weights (edgeflow.tflite.lut), on a slim file
    lut: bool = False
    #: with ``lut``: the largest TFLM arena in bytes, or "same" (``export --lut-max-arena``)
    lut_max_arena: ranged("arena_bytes") | Literal["same"] | None = None


class CheckStage(_Strict):
    """Check the .tflite against device profiles ("all" for every shipped board).

    ``firmware: true`` builds each TFLM board's firmware and runs it under QEMU, as
    ``edgeflow check`` does by default (needs arm-none-eabi-gcc, qemu-system-arm and the
    TFLM sources; the first build of a core takes minutes, later ones seconds); ``timeout``
    (with ``firmware: true`` and ``measure: true``) is the seconds each emulated run may take, as ``--timeout``
    (default :data:`edgeflow.firmware.emulator.TIMEOUT`, 300 s). ``firmware: true`` needs
    ``measure: true`` (the firmware run is the measurement); both with ``measure: false``
    are refused.
    """

    stage: Literal["check"]
    devices: list[str] | Literal["all"] = "all"
    devices_dir: str | None = None
    measure: bool = True
    firmware: bool = False
    timeout: ranged("emulation_seconds") | None = None

    @model_validator(mode="after")
    def _timeout_with_firmware(self):
        if self.timeout is not None and not self.firmware:
            raise ValueError("timeout applies to firmware: true (the seconds each emulated firmware run may take)")
        if self.timeout is not None and not self.measure:
            raise ValueError("timeout applies to the emulated firmware run, which measure: false turns off: "
                             "drop one of them")
        if self.firmware and not self.measure:
            raise ValueError("firmware: true builds and runs the firmware to measure the model, which measure: false "
                             "turns off: drop one of them")
        return self


StageSpec = Annotated[
    TrainStage | PruneStage | ClusterStage | QatStage | DistillStage | ConvertStage | CheckStage,
    Field(discriminator="stage"),
]
STAGE_TYPES = ("train", "prune", "cluster", "qat", "distill", "convert", "check")


#: The figures a search optimises or bounds, and the direction each one is better in.
FIGURES = {
    "accuracy": "maximize", "arena": "minimize", "ram": "minimize", "flash": "minimize",
    "latency": "minimize", "macs": "minimize",
}
Figure = Literal["accuracy", "arena", "ram", "flash", "latency", "macs"]


class Range(_Strict):
    """A numeric range of a search key: integers when ``low`` and ``high`` are both integers."""

    low: int | float
    high: int | float
    step: int | float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Bound(_Strict):
    """A bound on a figure: ``{min: 0.95}`` or ``{max: 60000}``."""

    min: float | None = None
    max: float | None = None


class Constraints(_Strict):
    """What a search result must satisfy: fit the board, and any bounds on figures."""

    fits: bool = True
    accuracy: Bound | None = None
    arena: Bound | None = None
    ram: Bound | None = None
    flash: Bound | None = None
    latency: Bound | None = None
    macs: Bound | None = None


class SearchSpec(_Strict):
    """The ``search:`` section: which keys vary (dotted recipe keys), objectives, constraints.

    Example::

        search:
          space:
            stages.1.ratio: {low: 0.0, high: 0.75}
            stages.4.mode: [int8, int16x8]
          objectives: [accuracy, ram]
          constraints: {fits: true, accuracy: {min: 0.95}}

    ``sampler``: ``tpe`` (Optuna's multi-objective TPE, the default), ``nsga2`` (NSGA-II) or
    ``grid`` (every combination of the choices once; every key a list).
    """

    space: dict[str, list[Any] | Range] = Field(default_factory=dict)
    objectives: list[Figure] = Field(default_factory=lambda: ["accuracy", "ram"], min_length=1)
    constraints: Constraints = Field(default_factory=Constraints)
    sampler: Literal["tpe", "nsga2", "grid"] = "tpe"
    trials: ranged("trials") = 20
    timeout: ranged("seconds") | None = None
    device: str | None = None
    devices_dir: str | None = None

    @model_validator(mode="after")
    def _choices(self):
        for key, dim in self.space.items():
            if isinstance(dim, list) and not dim:
                raise ValueError(f"space key {key!r}: give at least one choice")
        if self.sampler == "grid" and any(not isinstance(d, list) for d in self.space.values()):
            raise ValueError("sampler 'grid' needs a list of choices for every space key")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError("objectives: each figure at most once")
        return self


class DistributeSpec(_Strict):
    """The ``distribute:`` section: the ``tf.distribute`` strategy of the training stages
    (:mod:`edgeflow.distribute`): ``mirrored`` (local devices) or ``multi_worker`` (TF_CONFIG)."""

    strategy: Literal["mirrored", "multi_worker"]
    devices: list[str] | None = None

    @model_validator(mode="after")
    def _devices_for_mirrored(self):
        if self.devices is not None and self.strategy != "mirrored":
            raise ValueError("devices applies to strategy 'mirrored' (multi_worker reads TF_CONFIG)")
        return self


class Recipe(_Strict):
    """A whole recipe; see the module docstring.

    ``name`` becomes part of file and folder names (``runs/NAME``, ``NN-NAME-int8.tflite``),
    so it is a plain name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter
    or digit, at most 64 characters (no ``..``, no path separators).
    """

    name: str
    description: str = ""
    seed: ranged("seed") = 0
    output_dir: str | None = None
    max_drop: ranged("max_drop") = 1.0
    model: ModelSpec
    data: DataSpec = Field(default_factory=DataSpec)
    stages: list[StageSpec] = Field(min_length=1)
    search: SearchSpec | None = None
    distribute: DistributeSpec | None = None
    _source: str = PrivateAttr("<recipe>")

    @property
    def source(self) -> str:
        """The recipe file (or ``"<recipe>"``): the first word of every error about it."""
        return self._source

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or ".." in name:
            raise ValueError(
                f"{name!r} is not a plain name: it names the run folder and files, so use letters, "
                "digits, '.', '_' and '-' (at most 64, no '..', no '/'), e.g. my-model")
        return name

    @model_validator(mode="after")
    def _order(self):
        kinds = [s.stage for s in self.stages]
        if "check" in kinds and "convert" not in kinds[: kinds.index("check")]:
            raise ValueError("a 'check' stage needs a 'convert' stage before it")
        for i, s in enumerate(self.stages):
            if s.stage == "distill" and s.teacher in STAGE_TYPES and s.teacher not in kinds[:i]:
                raise ValueError(
                    f"stage {i} (distill): teacher {s.teacher!r} names no stage before it"
                )
        return self


def load_recipe(path: str | os.PathLike, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read and validate a recipe file; ``overrides`` are ``dotted.key=value`` strings.

    A bare name (``quickstart``) finds a recipe that ships with edgeflow.

    Example:
        >>> recipe = load_recipe("recipes/quickstart.yaml", ["stages.0.epochs=3"])
    """
    path = Path(path)
    if not path.exists() and (PACKAGED / f"{path.name}.yaml").exists():
        path = PACKAGED / f"{path.name}.yaml"
    if not path.exists():
        shipped = sorted(p.stem for p in PACKAGED.glob("*.yaml"))
        raise EdgeflowError(
            f"recipe {str(path)!r} does not exist{closest(path.stem, shipped)}; shipped recipes: "
            + ", ".join(shipped)
        )
    raw = _yaml.load(path)  # bounded: size and alias expansion
    if not isinstance(raw, dict):
        raise EdgeflowError(f"{path}: a recipe is a mapping with keys name, model, data, stages")
    overridden = [_override(raw, item, path) for item in overrides]
    _resolve_paths(raw, path.parent, overridden)
    return parse_recipe(raw, source=str(path))


def parse_recipe(raw: dict, source: str = "<recipe>") -> Recipe:
    """Validate a recipe given as a dict; errors name ``source`` and the key."""
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        raise EdgeflowError(f"{source}: {_describe(err, raw)}") from None
    recipe._source = source
    return recipe


def _resolve_paths(raw: dict, base: Path, overridden: list[str]) -> None:
    """Make the recipe's relative input paths absolute, in place.

    A path written in the recipe file is relative to the file's folder (the recipe works
    from any current folder); a path given by an override (``--set model.path=m.keras``)
    is relative to the current folder, like any path typed on the command line. The
    input paths are ``model.path``, ``model.custom_objects``, ``data.path``, a distill stage's ``teacher`` file, a
    check stage's ``devices_dir`` and profile files in its ``devices``. ``output_dir`` is
    an output: it stays relative to the current folder.
    """
    def fix(node, key, dotted: str) -> None:
        value = node[key] if isinstance(node, list) else node.get(key)
        if not isinstance(value, str) or not value:
            return
        path = Path(value).expanduser()
        if path.is_absolute():
            return
        by_override = any(dotted == o or dotted.startswith(o + ".") for o in overridden)
        node[key] = os.path.abspath(path if by_override else base / path)

    for section in ("model", "data"):
        if isinstance(raw.get(section), dict):
            fix(raw[section], "path", f"{section}.path")
    if isinstance(raw.get("model"), dict):
        fix(raw["model"], "custom_objects", "model.custom_objects")
    stages = raw.get("stages")
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        if not isinstance(stage, dict):
            continue
        if stage.get("stage") == "distill" and stage.get("teacher") not in (None, *STAGE_TYPES):
            fix(stage, "teacher", f"stages.{i}.teacher")
        if stage.get("stage") == "check":
            fix(stage, "devices_dir", f"stages.{i}.devices_dir")
            devices = stage.get("devices")
            for j, name in enumerate(devices if isinstance(devices, list) else []):
                if isinstance(name, str) and (name.endswith((".yaml", ".yml")) or os.sep in name):
                    fix(devices, j, f"stages.{i}.devices.{j}")


def _describe(err: ValidationError, raw: dict) -> str:
    """One line for the first validation error: the dotted key, the problem and a hint."""
    errors = err.errors()
    first = errors[0]
    if first["type"] == "list_type":
        # a search key is a list of values or a Range: report the branch the input was meant for
        branches = [e for e in errors if e["loc"][:-1] == first["loc"][:-1]]
        meant = [e for e in branches if e["type"] not in ("list_type", "model_type")]
        if meant:
            first = meant[0]
        elif any("Range" in str(e["loc"][-1]) for e in branches):
            first = {**first, "msg": "give a list of values or a range {low: ..., high: ...}"}
    # pydantic puts union branches ("list[any]", "function-after[...]") in the location
    loc = [str(p) for p in first["loc"]
           if (str(p) not in STAGE_TYPES or first["type"] == "missing") and not str(p).endswith("]")]
    # pydantic puts the discriminator value in the location: drop it for a readable key.
    key = ".".join(loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = _parent_fields(first["loc"], raw)
        hint = closest(str(first["loc"][-1]), parent) if parent else ""
        return f"unknown key {key!r}{hint}"
    if kind == "union_tag_invalid":
        tag = str(first.get("input", {}).get("stage", "")) if isinstance(first.get("input"), dict) else ""
        return (
            f"{key}: unknown stage {tag!r}{closest(tag, STAGE_TYPES)}; stages are "
            + ", ".join(STAGE_TYPES)
        )
    if kind == "union_tag_not_found":
        return f"{key}: each stage needs a 'stage' key, one of " + ", ".join(STAGE_TYPES)
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    if isinstance(got, (int, float, str)) and kind != "missing" and not msg.startswith(repr(got)):
        msg += f" (got {got!r})"
    return f"{key}: {msg}"


_SECTIONS: dict[str, type[BaseModel]] = {"model": ModelSpec, "data": DataSpec, "search": SearchSpec, "distribute": DistributeSpec}
_STAGE_MODELS = {
    "train": TrainStage, "prune": PruneStage, "cluster": ClusterStage, "qat": QatStage,
    "distill": DistillStage, "convert": ConvertStage, "check": CheckStage,
}


def _parent_fields(loc: tuple, raw: dict) -> list[str]:
    """The valid keys at the place of an unknown key, for a 'did you mean'."""
    if len(loc) == 1:
        return list(Recipe.model_fields)
    if loc[0] in _SECTIONS:
        return list(_SECTIONS[loc[0]].model_fields)
    if loc[0] == "stages" and len(loc) >= 3 and loc[2] in _STAGE_MODELS:
        return list(_STAGE_MODELS[loc[2]].model_fields)
    return []


def _override(raw: dict, item: str, path: Path) -> str:
    """Apply one ``a.b.0.c=value`` override (value parsed as YAML) to the raw recipe; return the key."""
    if "=" not in item:
        raise EdgeflowError(f"override {item!r} must look like key.path=value")
    dotted, value = item.split("=", 1)
    node: Any = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise EdgeflowError(f"override {dotted!r}: no such key in {path}")
    last = parts[-1]
    parsed = _yaml.load(value, f"override {dotted!r}")
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise EdgeflowError(f"override {dotted!r}: no such key in {path}")
        node[int(last)] = parsed
    elif isinstance(node, dict):
        node[last] = parsed
    else:
        raise EdgeflowError(f"override {dotted!r}: no such key in {path}")
    return dotted
