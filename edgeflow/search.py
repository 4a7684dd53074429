"""Fit-to-device search: the most accurate variants of a recipe that fit a board, on Optuna.

Each trial is the recipe with the values of its ``search:`` space set (dotted keys, as
``--set`` takes them), run through :func:`edgeflow.pipeline.run_recipe`; its figures come
from the recipe's ``convert`` stage (accuracy of the ``.tflite`` on LiteRT) and from
:func:`edgeflow.devices.check` on the board (arena, RAM and flash needed). Optuna samples
the values (TPE or NSGA-II, multi-objective, with the constraints as Optuna constraints)
and keeps the study in a database: SQLite in the search folder by default, or any
SQLAlchemy URL (``postgresql://...``) shared by workers on several machines.

A trial whose architecture already breaks a RAM, flash, arena, MACs or "fits" constraint
is dropped before any training (Optuna state PRUNED, with the reason): its untrained model
(after any structured pruning, which changes shapes) is converted and checked first; the
weights do not change those figures.

Figures and their directions (:data:`edgeflow.recipe.FIGURES`):

- ``accuracy``: the ``.tflite``'s accuracy on the held-out split (LiteRT), higher is better;
- ``arena``: the board's arena figure (``DeviceResult.arena_bytes``, its name in ``arena_figure``);
- ``ram``/``flash``: RAM and flash the board needs (``ram_required_bytes``/``flash_required_bytes``);
- ``latency``: host CPU latency of one inference on LiteRT in ms (median, ``litert.benchmark``);
  it ranks models, it is not the board's latency;
- ``macs``: multiply-accumulates of one inference (``edgeflow.tflite``'s count).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeflow import _io
from edgeflow.errors import EdgeflowError, first_line
from edgeflow.recipe import FIGURES, Range, Recipe, SearchSpec, _override, load_recipe, parse_recipe

__all__ = ["search", "SearchResult", "TrialResult", "default_space"]

_HEARTBEAT_SECONDS = 10  # a worker that stops beating for 2x this long has its trial failed
_ARCHITECTURE_FIGURES = ("arena", "ram", "flash", "macs")  # known before training
# The untrained model's measured arena differs from the trained one's by a few hundred bytes
# (seen: 5,9xx B vs 6,016 B for the digits CNN): a trial is dropped early only when it is
# over a bound by more than this fraction; otherwise it is trained and judged on its figures.
_EARLY_MARGIN = 0.02


@dataclass
class TrialResult:
    """One trial: the values it tried, its figures and what became of it.

    ``state`` is ``complete``, ``dropped`` (broke a constraint before training),
    ``failed`` (an error, or its worker was killed) or ``running``.
    """

    number: int
    state: str
    values: dict[str, Any]
    figures: dict[str, float | None] = field(default_factory=dict)
    fits: bool | None = None
    feasible: bool = False
    violations: list[str] = field(default_factory=list)
    seconds: float | None = None
    folder: str | None = None
    note: str = ""
    worker: str | None = None


@dataclass
class SearchResult:
    """The outcome of a search: every trial, the Pareto front and the best trial."""

    recipe: str
    device: str
    output_dir: str
    storage: str
    study: str
    objectives: list[str]
    constraints: dict
    space: dict[str, Any]
    trials: list[TrialResult]
    front: list[int]
    best: int | None
    best_artifacts: dict[str, str] = field(default_factory=dict)
    limits: dict[str, int | None] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when a trial satisfies every constraint, 1 when none does."""
        return 0 if self.best is not None else 1

    @property
    def dropped(self) -> int:
        """How many trials were dropped before training by a constraint."""
        return sum(t.state == "dropped" for t in self.trials)

    def trial(self, number: int) -> TrialResult:
        """The trial with this number (``KeyError`` when the study has none)."""
        for t in self.trials:
            if t.number == number:
                return t
        raise KeyError(number)

    def device_entry(self) -> dict:
        """The board's check result for the best trial (``edgeflow check --json``'s entry)."""
        if self.best is not None:
            report = Path(self.trial(self.best).folder or "") / "report.json"
            if report.exists():
                entries = json.loads(report.read_text()).get("devices", [])
                if entries:
                    return entries[0]
        return {"device": self.device, "fits": False, "verdict": "no trial satisfies every constraint"}

    def to_dict(self) -> dict:
        return {
            "recipe": self.recipe,
            "device": self.device,
            "output_dir": self.output_dir,
            "storage": self.storage,
            "study": self.study,
            "objectives": list(self.objectives),
            "constraints": self.constraints,
            "space": self.space,
            "limits": self.limits,
            "trials": [asdict(t) for t in self.trials],
            "front": list(self.front),
            "best": self.best,
            "dropped": self.dropped,
            "best_artifacts": dict(self.best_artifacts),
        }


# --------------------------------------------------------------------------- the space


def default_space(recipe: Recipe) -> dict[str, list | Range]:
    """The space of a recipe without a ``search:`` section, from its own stages.

    The width of a builder that takes one (``digits_cnn``'s ``width``, a
    ``keras.applications`` ``alpha``), every prune stage's ratio (structured) or target
    sparsity (magnitude), and the mode of every int8 convert stage (``int8``/``int16x8``)
    of a recipe without QAT (a QAT model converts to int8 only).

    Example:
        >>> default_space(load_recipe("recipes/quickstart.yaml"))
        {'model.kwargs.width': [0.25, 0.5, 0.75, 1.0], 'stages.1.target_sparsity': Range(low=0.0, high=0.9, ...), ...}
    """
    space: dict[str, list | Range] = {}
    kinds = [s.stage for s in recipe.stages]
    builder = recipe.model.builder
    if builder == "digits_cnn":
        space["model.kwargs.width"] = [0.25, 0.5, 0.75, 1.0]
    elif builder and builder.startswith("MobileNet") and "V3" not in builder:
        space["model.kwargs.alpha"] = [0.25, 0.35, 0.5, 0.75, 1.0]
    for i, stage in enumerate(recipe.stages):
        if stage.stage == "prune" and stage.method == "structured" and isinstance(stage.ratio, float):
            space[f"stages.{i}.ratio"] = Range(low=0.0, high=0.75)
        elif stage.stage == "prune" and stage.method == "magnitude":
            space[f"stages.{i}.target_sparsity"] = Range(low=0.0, high=0.9)
        elif stage.stage == "convert" and stage.mode == "int8" and "qat" not in kinds:
            space[f"stages.{i}.mode"] = ["int8", "int16x8"]
    if not space:
        raise EdgeflowError(
            f"recipe {recipe.name!r} has nothing to search over (no width, prune or int8 convert "
            "stage): give it a 'search: {space: {...}}' section"
        )
    return space


def _spec(recipe: Recipe, device: str | None, devices_dir: str | None) -> tuple[SearchSpec, dict]:
    spec = recipe.search or SearchSpec()
    space = dict(spec.space) or default_space(recipe)
    device = device or spec.device
    if not device:
        raise EdgeflowError("name the board to fit: --device NAME (or 'device:' in the search section)")
    kinds = [s.stage for s in recipe.stages]
    if "convert" not in kinds:
        raise EdgeflowError(f"recipe {recipe.name!r} has no convert stage: a search needs a .tflite to check")
    if not devices_dir and spec.devices_dir and Path(recipe.source).is_file():
        # a path written in the recipe is relative to the recipe's folder, like its other paths
        devices_dir = str(Path(recipe.source).parent / Path(spec.devices_dir).expanduser())
    return spec.model_copy(update={
        "space": space, "device": device, "devices_dir": devices_dir or spec.devices_dir,
    }), space


def _trial_recipe(base: dict, values: dict[str, Any], device: str | None, devices_dir: str | None,
                  source: str) -> Recipe:
    """The recipe of one trial: ``values`` set, the check on ``device`` (checks as written when
    ``device`` is None), the C array on."""
    raw = json.loads(json.dumps(base))
    for key, value in values.items():
        _override(raw, f"{key}={json.dumps(value)}", Path(source))
    stages = raw["stages"]
    last_convert = max(i for i, s in enumerate(stages) if s["stage"] == "convert")
    stages[last_convert]["c_array"] = True
    if device is None:
        return parse_recipe(raw, source=source)
    checks = [s for s in stages if s["stage"] == "check"]
    if checks:
        for check in checks:
            check.update(devices=[device], devices_dir=devices_dir)
    else:
        stages.append({"stage": "check", "devices": [device], "devices_dir": devices_dir})
    return parse_recipe(raw, source=source)


def check_section(recipe: Recipe) -> None:
    """Check a recipe's ``search:`` section without searching (``edgeflow validate`` runs it).

    Every space key (or the default space's) names a recipe key, both ends of each range
    give a valid recipe, the recipe has a convert stage and the board, when the section
    names one, has a profile.

    Raises:
        EdgeflowError: one line naming the recipe, the key and what is wrong.
    """
    if recipe.search is None:
        return
    if "convert" not in [s.stage for s in recipe.stages]:
        raise EdgeflowError(f"recipe {recipe.name!r} has no convert stage: a search needs a .tflite to check")
    spec = recipe.search
    devices_dir = spec.devices_dir
    if devices_dir and Path(recipe.source).is_file():
        devices_dir = str(Path(recipe.source).parent / Path(devices_dir).expanduser())
    _check_space(recipe.model_dump(mode="json", exclude={"search"}),
                 dict(spec.space) or default_space(recipe), spec.device, devices_dir,
                 f"{recipe.source}: search")


def _check_space(base: dict, space: dict, device: str | None, devices_dir: str | None, source: str) -> None:
    """Every key names a recipe key and every end of its range validates: before any work."""
    for key, dim in space.items():
        node: Any = base
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and (part in node or parts[:depth + 1] == ["model", "kwargs"]):
                node = node.get(part, {})
            else:
                raise EdgeflowError(f"{source}: search key {key!r} names no recipe key ({part!r})")
        ends = dim if isinstance(dim, list) else [dim.low, dim.high]
        for value in ends:
            _trial_recipe(base, {key: value}, device, devices_dir, f"{source}: search key {key!r} = {value!r}")
    if device is not None:
        from edgeflow.devices import get_device

        get_device(device, devices_dir=devices_dir) if devices_dir else get_device(device)


# --------------------------------------------------------------------------- the study


def search(
    recipe: Recipe | str | os.PathLike,
    device: str | None = None,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    storage: str | None = None,
    output_dir: str | os.PathLike | None = None,
    devices_dir: str | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    verbose: int = 1,
    echo: Callable[[str], None] = print,
) -> SearchResult:
    """Search the recipe's space for the most accurate models that fit ``device``.

    Args:
        recipe: a Recipe, a recipe file or a shipped recipe's name; its ``search:`` section
            (optional: :func:`default_space` otherwise) gives space, objectives, constraints.
        device: the board (a profile name); overrides ``search.device``.
        trials: finished trials the study should hold (complete or dropped; default
            ``search.trials``). Re-running continues the study up to this number.
        timeout: stop starting trials after this many seconds (per worker).
        workers: worker processes on this machine sharing the study.
        storage: a SQLAlchemy database URL (``postgresql://user@host/db``) shared by
            workers on several machines; default SQLite ``study.db`` in the search folder.
        output_dir: the search folder (default ``<recipe output_dir or runs/NAME>/search``).
        devices_dir: a folder of extra/own board profiles.
        overrides: ``dotted.key=value`` strings applied to the recipe file first.
        verbose: 0 silent, 1 a line per trial with its figures and the best so far.
        echo: where progress lines go.

    Returns:
        A :class:`SearchResult`; ``search.json``, ``search.html``, ``trials/NNNN/`` (each
        trial's recipe and artifacts) and ``best/`` (the best trial's ``.tflite`` and C array)
        are in the search folder.

    Raises:
        EdgeflowError: a bad recipe, space, board or storage, before any trial runs.

    Example:
        >>> result = search("recipes/quickstart.yaml", "arduino-nano-33-ble", trials=3)
        >>> result.trial(result.best).figures["accuracy"]
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    if workers < 1:
        raise EdgeflowError(f"workers must be at least 1 (got {workers})")
    spec, space = _spec(recipe, device, devices_dir)
    trials = trials or spec.trials
    timeout = timeout or spec.timeout
    base = recipe.model_dump(mode="json", exclude={"search"})
    source = recipe.name
    _check_space(base, space, spec.device, spec.devices_dir, source)
    out = Path(output_dir or Path(recipe.output_dir or f"runs/{recipe.name}") / "search")
    # new, empty or edgeflow's (a search folder from before the marker holds its study.db)
    ours = (out / "study.db").is_file() and not (out / _io.MARKER).is_file()
    if not ours:
        _io.check_dir(out, force=True)
    job = {
        "recipe": recipe.model_dump(mode="json"), "spec": spec.model_dump(mode="json"),
        "trials": trials, "timeout": timeout, "out": str(out),
        "storage": storage or f"sqlite:///{(out / 'study.db').resolve()}",
    }
    if storage:  # a storage URL that does not open is refused before any folder is made
        _open_study(job, create=True)
    if not ours:
        _io.claim_dir(out, force=True)
    storage = job["storage"]
    study = _open_study(job, create=True)
    import optuna

    optuna.storages.fail_stale_trials(study)  # a trial whose worker was killed: FAIL, not counted
    say = echo if verbose else (lambda _msg: None)
    done = _finished(study)
    say(f"edgeflow search: {recipe.name} on {spec.device}: {len(done)} of {trials} trials done, "
        f"{workers} worker(s), study {study.study_name!r} in {_safe_url(storage)}")
    _io.write_text(out / "recipe.yaml", _yaml(recipe.model_dump(mode="json", exclude_none=True)))
    remaining = max(0, trials - len(done))
    shares = [remaining // workers + (1 if k < remaining % workers else 0) for k in range(workers)]
    children = [_spawn_worker(job, k, shares[k], workers, verbose) for k in range(1, workers) if shares[k]]
    try:
        _work(job, 0, shares[0], workers, verbose, echo)
    finally:
        for child in children:
            child.wait()
    result = _result(_open_study(job), job)
    _write_outputs(result, recipe)
    if verbose:
        from edgeflow import report

        echo(report.render_search_table(result))
        echo(f"trials, search.json and search.html in {out}")
    return result


def _open_study(job: dict, *, create: bool = False):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = SearchSpec.model_validate(job["spec"])
    name = job["recipe"]["name"]
    try:
        storage = optuna.storages.RDBStorage(
            job["storage"], heartbeat_interval=_HEARTBEAT_SECONDS, grace_period=2 * _HEARTBEAT_SECONDS,
        )
    except Exception as err:  # SQLAlchemy/driver errors: a bad URL or an unreachable server
        raise EdgeflowError(f"cannot open the study storage {_safe_url(job['storage'])}: {first_line(err)}") from err
    directions = [FIGURES[f] for f in spec.objectives]
    study = optuna.create_study(
        storage=storage, study_name=name, directions=directions, load_if_exists=True,
        sampler=_sampler(spec, job["trials"], seed=job["recipe"]["seed"] + job.get("worker", 0)),
    )
    if list(study.directions) != [optuna.study.StudyDirection[d.upper()] for d in directions]:
        raise EdgeflowError(
            f"study {name!r} in {_safe_url(job['storage'])} has other objectives; "
            "give another --output-dir (or --storage) for a new study"
        )
    key = json.dumps({k: job["recipe"][k] for k in ("model", "data", "stages", "seed")}, sort_keys=True)
    stored = study.user_attrs.get("recipe_key")
    if stored is None and create:
        study.set_user_attr("recipe_key", key)
        study.set_user_attr("spec", job["spec"])
    elif stored is not None and stored != key:
        raise EdgeflowError(
            f"study {name!r} in {_safe_url(job['storage'])} was started with another recipe; "
            "give another --output-dir (or --storage) for a new study"
        )
    return study


def _sampler(spec: SearchSpec, trials: int, seed: int):
    import optuna

    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({k: list(v) for k, v in spec.space.items()}, seed=seed)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=min(50, max(4, trials // 4)), seed=seed,
        )
    return optuna.samplers.TPESampler(n_startup_trials=min(10, max(2, trials // 3)), seed=seed, multivariate=True)


def _finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _work(job: dict, worker: int, share: int, workers: int, verbose: int,
          echo: Callable[[str], None]) -> None:
    """Run ``share`` trials on the shared study (fewer once it holds ``job["trials"]``)."""
    import optuna
    from optuna.trial import TrialState

    if share == 0:
        return
    job = {**job, "worker": worker}
    study = _open_study(job)
    spec = SearchSpec.model_validate(job["spec"])
    say = echo if verbose else (lambda _msg: None)
    prefix = f"[worker {worker}] " if workers > 1 else ""
    study.optimize(
        lambda trial: _objective(trial, job, spec),
        n_trials=share, timeout=job["timeout"], catch=(Exception,),
        callbacks=[
            optuna.study.MaxTrialsCallback(job["trials"], states=(TrialState.COMPLETE, TrialState.PRUNED)),
            lambda st, tr: say(prefix + _progress_line(st, tr, job["trials"], spec)),
        ],
    )


def _spawn_worker(job: dict, worker: int, share: int, workers: int, verbose: int) -> subprocess.Popen:
    """A worker process on the same study (its lines go to this process's stderr)."""
    code = "import sys, json; from edgeflow.search import _worker_main; _worker_main(json.loads(sys.argv[1]))"
    args = json.dumps({"job": job, "worker": worker, "share": share, "workers": workers, "verbose": verbose})
    return subprocess.Popen([sys.executable, "-c", code, args], stdout=sys.stderr.fileno()
                            if _has_fileno(sys.stderr) else None)


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def _worker_main(args: dict) -> None:
    """Entry point of a worker process started by :func:`search`."""
    from edgeflow import _quiet

    with _quiet.session():
        _work(args["job"], args["worker"], args["share"], args["workers"], args["verbose"],
              lambda line: print(line, file=sys.stderr, flush=True))


# --------------------------------------------------------------------------- one trial


def _suggest(trial, key: str, dim):
    if isinstance(dim, list):
        return trial.suggest_categorical(key, dim)
    if isinstance(dim.low, int) and isinstance(dim.high, int) and not isinstance(dim.step, float):
        return trial.suggest_int(key, dim.low, dim.high, step=dim.step or 1, log=dim.log)
    return trial.suggest_float(key, float(dim.low), float(dim.high), step=dim.step, log=dim.log)


def _objective(trial, job: dict, spec: SearchSpec):
    import optuna

    from edgeflow.pipeline import run_recipe

    start = time.perf_counter()
    values = {key: _suggest(trial, key, dim) for key, dim in spec.space.items()}
    base = {k: v for k, v in job["recipe"].items() if k != "search"}
    recipe = _trial_recipe(base, values, spec.device, spec.devices_dir, job["recipe"]["name"])
    folder = Path(job["out"]) / "trials" / f"{trial.number:04d}"
    trial.set_user_attr("folder", str(folder))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    _io.claim_dir(folder, force=True)  # the trial's run folder: edgeflow's, so the run may write in it
    _io.write_text(folder / "recipe.yaml", _yaml(recipe.model_dump(mode="json", exclude_none=True)))
    early = _early_violations(recipe, spec, folder / "precheck")
    if early:
        trial.set_user_attr("dropped", "; ".join(early))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        raise optuna.TrialPruned("; ".join(early))
    try:
        result = run_recipe(recipe, output_dir=folder, verbose=0)
        figures, fits = _figures(result, spec)
    except Exception as err:  # the trial fails (Optuna state FAIL); the search goes on
        trial.set_user_attr("error", f"{type(err).__name__}: {first_line(err)}")
        raise
    violations = _violations(figures, fits, spec)
    trial.set_user_attr("figures", figures)
    trial.set_user_attr("fits", fits)
    trial.set_user_attr("limits", _limits(result, spec))
    trial.set_user_attr("violations", violations)
    for name, value in _constraint_values(figures, fits, spec).items():
        trial.set_constraint(name, value)
    trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
    return tuple(figures[f] for f in spec.objectives)


def _figures(result, spec: SearchSpec, with_latency: bool = True) -> tuple[dict[str, float | None], bool]:
    """The trial's figures from the pipeline's records and the check of the board."""
    from edgeflow import tflite as tfl

    convert = next(r for r in reversed(result.records) if r.stage == "convert")
    board = result.check[spec.device]
    data = result.artifact_path(convert).read_bytes()
    figures: dict[str, float | None] = {
        "accuracy": convert.tflite_accuracy,
        "arena": board.arena_bytes,
        "ram": board.ram_required_bytes,
        "flash": board.flash_required_bytes,
        "macs": tfl.parse(data).total_macs,
        "latency": None,
    }
    if with_latency:
        from edgeflow.runtime import litert

        figures["latency"] = round(litert.benchmark(data, runs=30).median_ms, 4)
    return figures, bool(board.fits)


def _limits(result, spec: SearchSpec) -> dict[str, int | None]:
    """The board's RAM and flash available (the limit lines of the plots)."""
    board = result.check[spec.device]
    return {"ram": board.ram_available_bytes, "flash": board.flash_available_bytes}


def _bounds(spec: SearchSpec) -> dict[str, Any]:
    return {name: getattr(spec.constraints, name) for name in FIGURES
            if getattr(spec.constraints, name) is not None}


def _violations(figures: dict, fits: bool | None, spec: SearchSpec, only=None, margin: float = 0.0) -> list[str]:
    """Each broken constraint as a short text (``"ram 61,234 B > 58,000 B"``); ``margin``:
    a fraction of the bound a figure may be over (or under) before it counts."""
    found = []
    if spec.constraints.fits and fits is False:
        found.append(f"does not fit {spec.device}")
    for name, bound in _bounds(spec).items():
        if only is not None and name not in only:
            continue
        value = figures.get(name)
        if value is None:
            continue
        show = (lambda v: f"{int(v):,} B") if name in ("arena", "ram", "flash") else (lambda v: f"{v:g}")
        if bound.min is not None and value < bound.min - margin * abs(bound.min):
            found.append(f"{name} {show(value)} < {show(bound.min)}")
        if bound.max is not None and value > bound.max + margin * abs(bound.max):
            found.append(f"{name} {show(value)} > {show(bound.max)}")
    return found


def _constraint_values(figures: dict, fits: bool, spec: SearchSpec) -> dict[str, float]:
    """Optuna's form of the constraints: ≤ 0 when satisfied, the relative excess otherwise."""
    values = {"fits": 0.0 if fits or not spec.constraints.fits else 1.0}
    for name, bound in _bounds(spec).items():
        value = figures.get(name)
        if value is None:
            continue
        if bound.min is not None:
            values[f"{name}_min"] = (bound.min - value) / (abs(bound.min) or 1.0)
        if bound.max is not None:
            values[f"{name}_max"] = (value - bound.max) / (abs(bound.max) or 1.0)
    return values


def _early_violations(recipe: Recipe, spec: SearchSpec, folder: Path) -> list[str]:
    """Constraints the untrained architecture already breaks (RAM, flash, arena, MACs, ops).

    Runs the recipe's shape-changing stages only (structured pruning, without training),
    the conversion and the check of the board: the weights hardly change these figures
    (bounds get a margin of ``_EARLY_MARGIN``; the board's own limits are checked as they are).
    """
    bounded = set(_bounds(spec)) & set(_ARCHITECTURE_FIGURES)
    if not bounded and not spec.constraints.fits:
        return []
    from edgeflow.pipeline import run_recipe

    raw = recipe.model_dump(mode="json", exclude={"search"})
    shaping = []
    for stage in raw["stages"]:
        if stage["stage"] == "prune" and stage["method"] == "structured":
            shaping.append({**stage, "epochs": 0, "max_accuracy_drop": None})
        elif stage["stage"] in ("convert", "check"):
            shaping.append(stage)
    raw["stages"] = shaping
    result = run_recipe(parse_recipe(raw, source=recipe.name), output_dir=folder, verbose=0)
    figures, _ = _figures(result, spec, with_latency=False)
    board = result.check[spec.device]
    found = _violations(figures, None, spec, only=bounded, margin=_EARLY_MARGIN)
    if spec.constraints.fits:
        # an untrained model may trip TFLM's softmax-scale abort: only RAM, flash and ops count
        over = [p.split(":")[0] for p in board.problems if p.split(":")[0] in ("RAM", "flash")]
        if over:
            found.insert(0, f"does not fit {spec.device} ({', '.join(over)})")
        if board.unsupported_ops:
            found.append(f"{len(board.unsupported_ops)} operator(s) not on {spec.device}")
    shutil.rmtree(folder, ignore_errors=True)
    return found


# --------------------------------------------------------------------------- results


def _trial_result(frozen) -> TrialResult:
    from optuna.trial import TrialState

    attrs = frozen.user_attrs
    state = {
        TrialState.COMPLETE: "complete", TrialState.PRUNED: "dropped",
        TrialState.FAIL: "failed", TrialState.RUNNING: "running", TrialState.WAITING: "waiting",
    }[frozen.state]
    violations = list(attrs.get("violations", []))
    note = attrs.get("dropped", "")
    if state == "failed":
        note = attrs.get("error") or frozen.system_attrs.get("fail_reason", "") or "its worker stopped"
    return TrialResult(
        number=frozen.number, state=state, values=dict(frozen.params),
        figures=dict(attrs.get("figures", {})), fits=attrs.get("fits"),
        feasible=state == "complete" and not violations, violations=violations,
        seconds=attrs.get("seconds"), folder=attrs.get("folder"), note=str(note), worker=attrs.get("worker"),
    )


def _result(study, job: dict) -> SearchResult:
    spec = SearchSpec.model_validate(job["spec"])
    trials = [_trial_result(t) for t in study.get_trials(deepcopy=False)]
    front = _front([t for t in trials if t.feasible], spec.objectives)
    best = max(front, key=lambda t: _rank(t, spec.objectives), default=None)
    limits = next((t.user_attrs["limits"] for t in study.get_trials(deepcopy=False) if "limits" in t.user_attrs),
                  {"ram": None, "flash": None})
    return SearchResult(
        recipe=job["recipe"]["name"], device=spec.device, output_dir=job["out"],
        storage=_safe_url(job["storage"]), study=study.study_name, objectives=list(spec.objectives),
        constraints=spec.constraints.model_dump(exclude_none=True),
        space={k: (v if isinstance(v, list) else v.model_dump(exclude_none=True)) for k, v in spec.space.items()},
        trials=trials, front=sorted(t.number for t in front), best=None if best is None else best.number,
        limits={**limits, **{f"{k}_max": v.max for k, v in _bounds(spec).items() if v.max is not None}},
    )


def _rank(trial: TrialResult, objectives: list[str]) -> tuple:
    """Best first: the first objective, then the others, each in its better direction."""
    return tuple((trial.figures[f] if FIGURES[f] == "maximize" else -trial.figures[f]) for f in objectives)


def _front(trials: list[TrialResult], objectives: list[str]) -> list[TrialResult]:
    """The trials no other trial dominates (as good in every objective, better in one)."""
    scores = [_rank(t, objectives) for t in trials]

    def dominated(a: tuple) -> bool:
        return any(all(x >= y for x, y in zip(b, a)) and b != a for b in scores)

    return [t for t, score in zip(trials, scores) if not dominated(score)]


def _progress_line(study, frozen, total: int, spec: SearchSpec) -> str:
    t = _trial_result(frozen)
    done = len(_finished(study))
    values = ", ".join(f"{k.split('.')[-1]}={_show_value(v)}" for k, v in t.values.items())
    head = f"trial {t.number} ({done}/{total}) {values}: "
    secs = f" ({t.seconds:.1f} s)" if t.seconds is not None else ""
    if t.state == "dropped":
        return head + f"dropped before training: {t.note}{secs}"
    if t.state == "failed":
        return head + f"failed: {t.note}"
    status = "ok" if t.feasible else "breaks " + "; ".join(t.violations)
    feasible = [x for x in (_trial_result(f) for f in _finished(study)) if x.feasible]
    best = max(feasible, key=lambda x: _rank(x, spec.objectives), default=None)
    best_text = "none fits yet" if best is None else f"#{best.number} {_show_figures(best.figures, spec.objectives)}"
    return head + f"{_show_figures(t.figures, spec.objectives)}, {status}{secs}; best {best_text}"


def _show_value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _show_figures(figures: dict, names: list[str]) -> str:
    from edgeflow.report import format_bytes

    shown = []
    for name in names:
        value = figures.get(name)
        if value is None:
            shown.append(f"{name} n/a")
        elif name == "accuracy":
            shown.append(f"accuracy {value:.4f}")
        elif name == "latency":
            shown.append(f"latency {value:.3f} ms")
        elif name == "macs":
            shown.append(f"{int(value):,} MACs")
        else:
            shown.append(f"{name} {format_bytes(int(value))}")
    return ", ".join(shown)


def _write_outputs(result: SearchResult, recipe: Recipe) -> None:
    """``best/`` (the best trial's .tflite, C array and recipe), ``search.json``, ``search.html``."""
    out = Path(result.output_dir)
    if result.best is not None:
        folder = Path(result.trial(result.best).folder or "")
        best = out / "best"
        best.mkdir(exist_ok=True)
        for old in best.iterdir():
            old.unlink()
        tflites = sorted(folder.glob("*.tflite"))
        for src in [*tflites[-1:], folder / "model_data.h", folder / "model_data.cc", folder / "recipe.yaml"]:
            if src.exists():
                dst = best / src.name
                _io.write_bytes(dst, src.read_bytes())
                result.best_artifacts[src.suffix.lstrip(".") if src.suffix != ".yaml" else "recipe"] = str(dst)
    from edgeflow import report

    _io.write_text(out / "search.json", json.dumps(result.to_dict(), indent=2, default=str))
    _io.write_text(out / "search.html", report.render_search_html(result))


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _safe_url(url: str) -> str:
    """A storage URL without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url

