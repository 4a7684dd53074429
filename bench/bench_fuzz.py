"""Fuzzed .tflite files through the reader, ``inspect --json`` and ``check --json``: counts per
outcome; and the time to read, plan and check a 20,000-tensor file.

    python bench/bench_fuzz.py                  # 10,000 mutants, check on every one
    python bench/bench_fuzz.py -n 2000 --check-every 5
    python bench/bench_fuzz.py --big            # only the 20,000-tensor timing

Outcomes (tests/_fuzz.py): clean_error (the reader refuses, exit 2 with a valid document),
accepted (read; inspect 0, check 0/1), unhandled (an exception escaped or exit 3),
invalid_json, fits_refused (a board "fits" although LiteRT refuses the model), crash (the
edgeflow process died), over_10s (CPU time of the worker and its child processes: wall
time on a shared machine measures the other processes too; each record keeps both). Seeds: a small CNN trained on the digits (int8 and
float32) and a dense int8 net. ``check`` runs ``-d all --no-measure`` (LiteRT is probed in
its child process; TFLM's measurement, another child, is left out for time).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _fuzz  # noqa: E402


def _seeds(folder: Path) -> None:
    from _models import small_cnn

    from edgeflow._keras import keras
    from edgeflow.convert import convert
    from edgeflow.data import digits

    (x, y), _ = digits()
    keras.utils.set_random_seed(0)
    cnn = small_cnn()
    cnn.compile("adam", "sparse_categorical_crossentropy")
    cnn.fit(x[:500], y[:500], epochs=1, verbose=0)
    dense = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    (folder / "cnn_int8.tflite").write_bytes(convert(cnn, "int8", x[:100]))
    (folder / "cnn_float32.tflite").write_bytes(convert(cnn, "float32"))
    (folder / "dense_int8.tflite").write_bytes(convert(dense, "int8", x[:100]))


def chain_model(n_ops: int) -> bytes:
    """A float ADD chain with ``n_ops + 2`` tensors (each op adds the two previous outputs)."""
    import flatbuffers

    from edgeflow.tflite._schema import schema as s

    def tensor(i):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 8], s.TensorType.FLOAT32, 0, f"t{i}".encode()
        return t

    code = s.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = s.BuiltinOperator.ADD, 0, 1
    graph = s.SubGraphT()
    graph.tensors, graph.operators = [tensor(0), tensor(1)], []
    prev, other = 0, 1
    for _ in range(n_ops):
        graph.tensors.append(tensor(len(graph.tensors)))
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [prev, other], [len(graph.tensors) - 1]
        op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
        graph.operators.append(op)
        other, prev = prev, len(graph.tensors) - 1
    graph.inputs, graph.outputs = [0, 1], [prev]
    model = s.ModelT()
    model.version, model.operatorCodes, model.buffers, model.subgraphs = 3, [code], [s.BufferT()], [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def big(tensors: int) -> None:
    from click.testing import CliRunner

    from edgeflow.cli import main
    from edgeflow.tflite import parse, plan_memory

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chain.tflite"
        path.write_bytes(chain_model(tensors - 2))
        print(f"{tensors:,}-tensor ADD chain, {path.stat().st_size:,} bytes:")
        t0 = time.perf_counter()
        info = parse(path)
        t1 = time.perf_counter()
        plan_memory(info)
        t2 = time.perf_counter()
        print(f"  read {t1 - t0:.2f} s, memory plan {t2 - t1:.2f} s")
        for args in (["inspect", str(path), "--json"],
                     ["check", str(path), "-d", "all", "--no-measure", "--json"]):
            t0 = time.perf_counter()
            result = CliRunner().invoke(main, args)
            print(f"  edgeflow {args[0]}: exit {result.exit_code}, {time.perf_counter() - t0:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="mutants (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-every", type=int, default=1, help="run check on every k-th mutant")
    parser.add_argument("--big", action="store_true", help="only time the 20,000-tensor file")
    parser.add_argument("--log", help="keep the per-mutant JSON lines here")
    args = parser.parse_args()
    if args.big:
        big(20_000)
        return
    with tempfile.TemporaryDirectory() as folder:
        seeds = Path(folder) / "seeds"
        seeds.mkdir()
        _seeds(seeds)
        t0 = time.perf_counter()
        records = _fuzz.run(seeds, args.n, args.seed, args.log or Path(folder) / "fuzz.log",
                            check_every=args.check_every)
        seconds = time.perf_counter() - t0
    counts = collections.Counter(r["outcome"] for r in records.values())
    print(f"{args.n:,} mutants (seed {args.seed}, check on every {args.check_every}), {seconds:.0f} s:")
    for outcome in _fuzz.OUTCOMES:
        print(f"  {outcome:<13} {counts[outcome]:>6,}")
    slowest = max(records.values(), key=lambda r: r.get("cpu_seconds", 0))
    print(f"  slowest mutant {slowest.get('cpu_seconds', 0):.2f} s of CPU, {slowest['seconds']:.2f} s wall "
          f"({slowest['what']})")
    for r in [r for r in records.values() if r["outcome"] not in ("clean_error", "accepted")][:20]:
        print(f"  {r['outcome']}: {r['what']}: {r['detail']}")


if __name__ == "__main__":
    main()
