"""Deploy a ``.tflite`` to a Linux board over SSH and measure it there (Raspberry Pi, Coral Dev Board).

The steps, each printed as it runs (and only printed with ``dry_run=True``):

1. read and parse the model; make the benchmark input (a given ``.npy`` sample, quantized
   with the model's input scale/zero point when it is float, or a seeded random tensor);
2. create the remote directory and copy the self-contained benchmark script
   (``edgeflow/_data/templates/board_bench.py``: needs Python, numpy and a LiteRT runtime);
3. check the runtime on the board (``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow``);
   if none is found and ``install=True``, create ``REMOTE_DIR/venv`` and
   ``pip install ai-edge-litert`` into it;
4. copy the model and the input; run ``warmup`` untimed and ``runs`` timed invocations on
   the board (``threads`` interpreter threads) and bring back one JSON object;
5. run the same input through the host's LiteRT and compare the outputs.

The record (:class:`BoardResult`) holds the latency figures measured on the board, the
correctness check and the list of steps; ``to_dict()`` is what ``--json`` writes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgeflow import _io
from edgeflow.deploy.ssh import SAFE_REMOTE_PATH, SSHTarget, quote, show
from edgeflow.errors import EdgeflowError

BENCH_SCRIPT = "board_bench.py"
RUNTIME_PACKAGE = "ai-edge-litert"


@dataclass
class BoardResult:
    """What a board deployment did and measured. Latencies are milliseconds on the board."""

    target: str
    host: str
    model: str
    model_bytes: int
    model_sha256: str
    dry_run: bool
    steps: list[str] = field(default_factory=list)
    remote_dir: str = ""
    remote_python: str = ""
    board: dict = field(default_factory=dict)
    runtime: dict | None = None
    installed_runtime: bool = False
    latency: dict | None = None
    correctness: dict | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every field."""
        return asdict(self)


def bench_script_text() -> str:
    """The source of the benchmark script that is copied to the board."""
    return resources.files("edgeflow").joinpath("_data/templates", BENCH_SCRIPT).read_text(encoding="utf-8")


def deploy_rpi(model, target: SSHTarget, **kwargs) -> BoardResult:
    """Copy a ``.tflite`` to a Raspberry Pi (or any Linux board), benchmark it there, check it.

    Args:
        model: path to a ``.tflite`` file, or its bytes.
        target: how to reach the board (:class:`edgeflow.deploy.ssh.SSHTarget`).
        **kwargs: see :func:`deploy_board` (runs, warmup, threads, install, remote_python,
            remote_dir, sample, dry_run, log, ...).

    Returns:
        A :class:`BoardResult`; nothing is changed locally. On the board, files are
        written under ``remote_dir`` (and a venv there when the runtime is installed).

    Example:
        >>> r = deploy_rpi("model.tflite", SSHTarget("pi@raspberrypi.local"), runs=100, threads=4)
        >>> r.latency["median_ms"], r.correctness["match"]
    """
    kwargs.setdefault("target_name", "raspberry-pi")
    return deploy_board(model, target, **kwargs)


def deploy_board(
    model,
    target: SSHTarget,
    *,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    install: bool = True,
    remote_python: str = "python3",
    remote_dir: str = "edgeflow-deploy",
    sample=None,
    seed: int = 0,
    tolerance: float | None = None,
    delegate: str | None = None,
    reference_model: bytes | None = None,
    target_name: str = "linux-board",
    dry_run: bool = False,
    log: Callable[[str], None] | None = None,
    timeout: float = 900,
) -> BoardResult:
    """Benchmark a model on a board over SSH and compare its output with the host's LiteRT.

    Latency figures: ``median_ms`` and ``p90_ms`` are the 50th and 90th percentiles of the
    ``runs`` timed ``invoke()`` calls (linear interpolation between ranks, as numpy's
    default), after ``warmup`` untimed calls.

    Correctness: the board's raw outputs, dequantized, against the host LiteRT's
    (``edgeflow.runtime.litert.predict``) for the same input; see :func:`compare_outputs`
    (default tolerance: one quantization step, or ``1e-4 * max(1, max|host|)`` for float).

    Args:
        model: ``.tflite`` path or bytes.
        target: the SSH target.
        runs, warmup: timed and untimed invocations on the board.
        threads: interpreter threads on the board (``None``: the runtime's default).
        install: when no runtime is found on the board, create ``remote_dir/venv`` and
            ``pip install ai-edge-litert`` there; ``False`` fails instead (``--skip-install``).
        remote_python: Python on the board.
        remote_dir: directory on the board, relative to the login directory unless absolute.
        sample: input to feed (array or ``.npy`` path, with or without the batch axis;
            float samples are quantized for an integer input); default a seeded random tensor.
        seed: seed of the random input.
        tolerance: override of the correctness tolerance, in output units.
        delegate: a delegate library loaded on the board (``libedgetpu.so.1`` for Coral).
        reference_model: the model the host runs for the correctness check when it differs
            from ``model`` (the uncompiled model for an Edge TPU compiled one).
        target_name: the name recorded in the result.
        dry_run: print (``log``) every step and its command without running anything.
        log: called with one line per step.
        timeout: seconds allowed for each remote command.

    Returns:
        :class:`BoardResult`.

    Example:
        >>> deploy_board("m.tflite", SSHTarget("board"), dry_run=True, log=print).steps[0]
    """
    from edgeflow.runtime import litert
    from edgeflow.tflite import read_bytes

    say = log or (lambda _msg: None)
    data = read_bytes(model)
    in_details = litert.interpreter(data).get_input_details()
    name = Path(model).name if not isinstance(model, bytes | bytearray) else "model.tflite"
    remote_name = _remote_name(name)  # the copy on the board: no shell metacharacters
    if runs < 1 or warmup < 0:
        raise EdgeflowError(f"runs must be >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    if threads is not None and threads < 1:
        raise EdgeflowError(f"threads must be >= 1 (got {threads})")
    rdir = _remote_dir(remote_dir)
    result = BoardResult(
        target=target_name, host=target.host, model=name, model_bytes=len(data),
        model_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run,
        remote_dir=rdir, remote_python=remote_python,
    )

    def step(msg: str, argv: list[str] | None = None) -> None:
        line = f"[{len(result.steps) + 1}] {msg}" + (f"\n      $ {show(argv)}" if argv else "")
        result.steps.append(line)
        say(line)

    x = make_input(in_details, sample, seed)
    step(f"model {name}: {len(data):,} bytes, input {x.dtype}{list(x.shape)} "
         f"({'from ' + str(sample) if isinstance(sample, str | Path) else 'given array' if sample is not None else f'random, seed {seed}'})")
    # A dry run reads no SSH config either (``ssh -G`` would run its ``Match exec`` lines).
    step(f"connect to {target.host} with host-key checking "
         f"{'accept-new (trust on first use)' if target.accept_new_host_key else 'strict'}")

    bench = bench_script_text()
    remote_script = f"{rdir}/{BENCH_SCRIPT}"
    with _io.temporary_dir("deploy-") as tmp:
        tmp = Path(tmp)
        (tmp / BENCH_SCRIPT).write_text(bench, encoding="utf-8")
        (tmp / remote_name).write_bytes(data)
        np.save(tmp / "input.npy", x)

        mkdir = f"mkdir -p {quote(rdir)}"
        step(f"create {rdir} on the board", target.ssh_argv(mkdir))
        if not dry_run:
            target.run(mkdir, timeout=timeout, what="creating the remote directory")
        step(f"copy the benchmark script ({len(bench):,} bytes)", target.scp_argv(tmp / BENCH_SCRIPT, remote_script))
        if not dry_run:
            target.copy(tmp / BENCH_SCRIPT, remote_script, timeout=timeout)

        python = remote_python
        venv_python = f"{rdir}/venv/bin/python"
        probe = _probe_command(python, remote_script)
        step(f"check the LiteRT runtime with {python} (ai_edge_litert, tflite_runtime or tensorflow)",
             target.ssh_argv(probe))
        if dry_run:
            inst = _install_command(python, rdir)
            if install:
                step(f"if none is found (or {venv_python} has one), install {RUNTIME_PACKAGE} into {rdir}/venv",
                     target.ssh_argv(inst))
            else:
                step("if none is found: stop with an error (--skip-install)")
        else:
            found = _probe(target, probe, timeout)
            if found.get("runtime") is None:
                venv_probe = f"test -x {quote(venv_python)} && " + _probe_command(venv_python, remote_script)
                try:
                    found_venv = _probe(target, venv_probe, timeout)
                except EdgeflowError:
                    found_venv = {}
                if found_venv.get("runtime"):
                    python, found = venv_python, found_venv
                    step(f"found {found['runtime']['module']} {found['runtime']['version']} in {rdir}/venv")
                elif install:
                    inst = _install_command(python, rdir)
                    step(f"no runtime on the board: install {RUNTIME_PACKAGE} into {rdir}/venv", target.ssh_argv(inst))
                    target.run(inst, timeout=max(timeout, 1800), what=f"installing {RUNTIME_PACKAGE}")
                    python = venv_python
                    found = _probe(target, _probe_command(python, remote_script), timeout)
                    result.installed_runtime = True
                    if found.get("runtime") is None:
                        raise EdgeflowError(f"{RUNTIME_PACKAGE} was installed on {target.host} but cannot be imported; "
                                            f"run {venv_python} -c 'import ai_edge_litert' there to see why")
                else:
                    raise EdgeflowError(
                        f"no LiteRT runtime on {target.host} for {python}: install it there "
                        f"({python} -m pip install {RUNTIME_PACKAGE}) or drop --skip-install")
            result.remote_python = python
            result.runtime = found["runtime"]
            result.board = {k: found.get(k) for k in ("python", "machine", "system")}
            step(f"board: {found.get('machine')} {found.get('system')}, Python {found.get('python')}, "
                 f"{found['runtime']['module']} {found['runtime']['version']}")

        for local in (remote_name, "input.npy"):
            rpath = f"{rdir}/{local}"
            step(f"copy {local}", target.scp_argv(tmp / local, rpath))
            if not dry_run:
                target.copy(tmp / local, rpath, timeout=timeout)

        run_cmd = (f"{quote(python)} {quote(remote_script)} --model {quote(rdir + '/' + remote_name)} "
                   f"--input {quote(rdir + '/input.npy')} --runs {runs} --warmup {warmup}"
                   + (f" --threads {threads}" if threads else "")
                   + (f" --delegate {quote(delegate)}" if delegate else ""))
        step(f"benchmark on the board: {warmup} warm-up + {runs} timed runs"
             + (f", {threads} threads" if threads else "") + (f", delegate {delegate}" if delegate else ""),
             target.ssh_argv(run_cmd))
        step("compare the board's output with the host's LiteRT on the same input"
             + (" (host runs the uncompiled model)" if reference_model is not None else ""))
        if dry_run:
            return result
        out = target.run(run_cmd, timeout=timeout, what="the benchmark")
        figures = _last_json(out)

    result.latency = {k: figures[k] for k in ("median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms",
                                              "runs", "warmup", "threads")}
    result.latency["delegate"] = delegate
    board_outputs = [_decode(o) for o in figures["outputs"]]
    quant = [tuple(o.get("quantization") or (0.0, 0)) for o in figures["outputs"]]
    result.correctness = compare_outputs(board_outputs, quant, host_outputs(reference_model or data, x), tolerance)
    step(f"board latency median {result.latency['median_ms']:.3f} ms, p90 {result.latency['p90_ms']:.3f} ms; "
         f"output {'matches' if result.correctness['match'] else 'DIFFERS FROM'} the host "
         f"(max |diff| {result.correctness['max_abs_diff']:g}, tolerance {result.correctness['tolerance']:g})")
    return result


def make_input(input_details: list[dict], sample=None, seed: int = 0) -> np.ndarray:
    """The single input tensor to feed, in the model's input dtype and shape.

    ``input_details`` are LiteRT's (``interpreter.get_input_details()``). A float sample
    for an integer input is quantized, ``q = clip(round(x / scale) + zero_point)``.
    Without a sample: a seeded random tensor over the dtype's range (integers) or
    uniform in [0, 1) (floats).
    """
    from edgeflow.runtime._quant import quantize

    if len(input_details) != 1:
        raise EdgeflowError(f"the model has {len(input_details)} inputs; board deployment feeds exactly one")
    d = input_details[0]
    shape = tuple(int(s) for s in d["shape"])
    dtype = np.dtype(d["dtype"])
    if sample is None:
        rng = np.random.default_rng(seed)
        if np.issubdtype(dtype, np.integer):
            lim = np.iinfo(dtype)
            return rng.integers(lim.min, int(lim.max) + 1, size=shape, dtype=dtype)
        return rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    if isinstance(sample, str | Path):
        if not Path(sample).is_file():
            raise EdgeflowError(f"input sample {sample} not found")
        from edgeflow.data import read_arrays

        path, sample = sample, read_arrays(sample)
        if isinstance(sample, dict):
            raise EdgeflowError(f"input sample {path} is a .npz file: save one array with np.save (.npy)")
    x = np.asarray(sample)
    if x.shape != shape and x.shape == shape[1:]:
        x = x[None]
    if x.shape != shape:
        raise EdgeflowError(f"input sample has shape {list(x.shape)}; the model expects {list(shape)}")
    if np.issubdtype(x.dtype, np.floating):
        return quantize(x, d)
    return x.astype(dtype)


def host_outputs(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    """The host LiteRT outputs for the raw input ``x`` (float; integer outputs dequantized)."""
    from edgeflow.runtime import litert
    from edgeflow.runtime._quant import dequantize

    d = litert.interpreter(model).get_input_details()[0]
    y = litert.predict(model, dequantize(x, d))  # predict quantizes it back to exactly x
    return [np.asarray(a) for a in (y if isinstance(y, list) else [y])]


def compare_outputs(board: list[np.ndarray], board_quant: list[tuple[float, int]], host: list[np.ndarray],
                    tolerance: float | None = None) -> dict:
    """Compare the board's raw outputs with the host's float outputs for the same input.

    The board's integer outputs are dequantized, ``real = scale * (q - zero_point)``.
    ``match`` is true when every output has ``max|board - host| <= tolerance``; the
    default tolerance is one quantization step (``scale``: the board's ARM kernels may
    round differently from the host's x86 ones) for quantized outputs and
    ``1e-4 * max(1, max|host|)`` for float outputs. ``max_diff_steps`` is the worst
    difference in quantization steps. ``top1_agree`` compares the arg-max of the first
    output per batch row.
    """
    from edgeflow.runtime._quant import dequantize

    if len(board) != len(host) or any(b.shape != h.shape for b, h in zip(board, host, strict=False)):
        return {"match": False, "max_abs_diff": float("inf"), "max_diff_steps": None,
                "tolerance": float(tolerance or 0.0), "top1_agree": False,
                "detail": f"board outputs {[list(b.shape) for b in board]}, host outputs {[list(h.shape) for h in host]}"}
    match, worst, worst_steps, tol_reported = True, 0.0, None, 0.0
    boards_f = []
    for b, (scale, zp), h in zip(board, board_quant, host, strict=True):
        bf = dequantize(b, {"dtype": b.dtype, "quantization": (scale, zp)}).astype(np.float64)
        boards_f.append(bf)
        diff = float(np.max(np.abs(bf - h.astype(np.float64)))) if b.size else 0.0
        quantized = np.issubdtype(b.dtype, np.integer) and scale > 0
        if tolerance is not None:
            tol = float(tolerance)
        elif quantized:
            tol = scale * (1 + 1e-6)
        else:
            tol = 1e-4 * max(1.0, float(np.max(np.abs(h))) if h.size else 1.0)
        match &= diff <= tol
        if diff >= worst:
            worst, tol_reported = diff, tol
            worst_steps = round(diff / scale, 3) if quantized else None
    b0, h0 = boards_f[0], host[0]
    rows = b0.shape[0] if b0.ndim > 1 else 1
    top1 = bool(np.array_equal(np.argmax(b0.reshape(rows, -1), axis=-1), np.argmax(h0.reshape(rows, -1), axis=-1))) \
        if b0.size else True
    return {"match": bool(match), "max_abs_diff": worst, "max_diff_steps": worst_steps,
            "tolerance": tol_reported, "top1_agree": top1}


# -- helpers ---------------------------------------------------------------------
def _remote_dir(remote_dir: str) -> str:
    d = remote_dir.strip()
    if d.startswith("~/"):
        d = d[2:]
    if not d or d in ("~", ".", "/") or ".." in Path(d).parts:
        raise EdgeflowError(f"remote directory {remote_dir!r} is not a directory edgeflow may write to: give e.g. edgeflow-deploy")
    if not SAFE_REMOTE_PATH.fullmatch(d):
        raise EdgeflowError(f"remote directory {remote_dir!r} may hold only letters, digits and . _ - + /: "
                            "the board's shell reads it (e.g. edgeflow-deploy)")
    return d.rstrip("/")


def _remote_name(name: str) -> str:
    """The model's file name on the board: every character but letters, digits and ``._-+``
    becomes ``_`` (``m;rm -rf ~.tflite`` → ``m_rm_-rf__.tflite``), so that no shell, scp's
    or a command's, can read it as anything but a name."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".-") or "model.tflite"
    return safe if safe.endswith(".tflite") else safe + ".tflite"


def _probe_command(python: str, script: str) -> str:
    return f"{quote(python)} {quote(script)} --check"


def _install_command(python: str, rdir: str) -> str:
    venv = f"{rdir}/venv"
    return (f"{quote(python)} -m venv {quote(venv)} && {quote(venv + '/bin/python')} -m pip install "
            f"--quiet --upgrade pip {RUNTIME_PACKAGE}")


def _probe(target: SSHTarget, command: str, timeout: float) -> dict:
    try:
        out = target.run(command, timeout=timeout, what="checking the runtime")
    except EdgeflowError as err:
        if "exit 127" in str(err) or "not found" in str(err):
            raise EdgeflowError(f"{command.split()[0]} was not found on {target.host}: pass --remote-python PATH") from err
        raise
    return _last_json(out)


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise EdgeflowError(f"the board's benchmark printed no result: {text.strip()[-200:] or 'no output'}")


def _decode(o: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(o["data"]), dtype=np.dtype(o["dtype"])).reshape(o["shape"])


def summary_table(result: BoardResult) -> str:
    """The board figures as a plain-text table (``edgeflow.report.table``)."""
    from edgeflow.report import table

    lat, cor = result.latency or {}, result.correctness or {}
    rt = result.runtime or {}
    if cor.get("max_diff_steps") is not None:
        diff = f"{cor['max_diff_steps']:g} steps"
    else:
        diff = f"{cor.get('max_abs_diff', float('nan')):.3g}"
    row = [
        f"{result.target} ({result.board.get('machine') or '?'})",
        f"{rt.get('module', '?')} {rt.get('version', '')}".strip(),
        str(lat.get("threads") or "default") + (f" +{lat['delegate']}" if lat.get("delegate") else ""),
        f"{lat.get('median_ms', float('nan')):.3f}",
        f"{lat.get('p90_ms', float('nan')):.3f}",
        str(lat.get("runs", "")),
        ("match" if cor.get("match") else "DIFFERS") + f" (max diff {diff})",
    ]
    return table(["board", "runtime", "threads", "median ms", "p90 ms", "runs", "vs host LiteRT"], [row],
                 "lllrrrl")
