"""Knowledge distillation on the digits task: does a small student learn more from a teacher?

Part 1 ("kinds"): a teacher (the quickstart ``digits_cnn``, ~22 k parameters) is trained
once; a deliberately small student (~700 parameters) is trained from scratch with the
same optimizer, epochs and data, either alone (labels only) or with each kind of
distillation. Test accuracy over several seeds: mean ± standard deviation, min-max.

Part 2 ("chain"): the trained teacher is pruned, then recovered either by fine-tuning on
the labels or by distilling from the unpruned teacher, then trained with QAT and
converted to int8; the int8 model's accuracy is measured with LiteRT. Both branches
start from the same pruned model, so they have the same size.

Run (about 6 minutes on 2 cores):

    PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_distill.py [--seeds 4] [--epochs 30]
        [--chain-seeds 3] [--chain-epochs 10] [--part kinds|chain|all|temperature]

Part 3 (``--part temperature``, about 2 minutes) asks why soft labels lose in part 2:
the 90 %-magnitude-pruned teacher recovered by fine-tuning or by soft labels at several
temperatures and α.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy as np

from edgeflow._keras import keras, tf
from edgeflow.data import digits
from edgeflow.distill import distill
from edgeflow.models import digits_cnn

PAIRS = {"relu2": "s_conv"}  # teacher 8×8×32 ↔ student 8×8×4 (a 1×1 adapter for "feature")

KINDS = {
    "student alone": {"losses": ()},
    "soft (T=4, a=0.1)": {"losses": ("soft",)},
    "feature (MSE, w=1)": {"losses": ("feature",)},
    "attention (w=1)": {"losses": ("attention:1",)},
    "attention (w=10)": {"losses": ("attention:10",)},
    "soft + attention (w=1)": {"losses": ("soft", "attention:1")},
}

# Part 2: the same pruned model recovered two ways, then QAT (2 epochs) and int8.
CHAINS = {
    "structured 75% (l1)": {"prune": "structured", "ratio": 0.75},
    "magnitude 90%": {"prune": "magnitude", "target_sparsity": 0.9},
}


def small_student() -> keras.Model:
    """Conv(4) → max pool → Dense(10): 690 parameters (the teacher has 21,738)."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s_conv")(inputs)
    x = keras.layers.MaxPooling2D(name="s_pool")(x)
    x = keras.layers.Flatten(name="s_flat")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="s_out")(x)
    return keras.Model(inputs, outputs, name="small_student")


def accuracy(model, x, y) -> float:
    pred = model.predict(x, verbose=0, batch_size=256)
    return float(np.mean(np.argmax(pred, -1) == y))


def summary(values: list[float]) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:6.2f} ± {100 * sd:4.2f}  [{100 * min(values):5.2f}-{100 * max(values):5.2f}]"


def train_teacher(x, y, epochs: int, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    teacher = digits_cnn()
    teacher.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    teacher.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return teacher


def part_kinds(teacher, data, seeds: list[int], epochs: int) -> None:
    (x, y), (xt, yt) = data
    print(f"\n## Part 1: small student ({small_student().count_params()} params) vs each kind "
          f"of distillation; {len(seeds)} seeds, {epochs} epochs, Adam 2e-3, batch 32")
    print(f"teacher digits_cnn ({teacher.count_params()} params): test accuracy "
          f"{100 * accuracy(teacher, xt, yt):.2f} %")
    print(f"{'student trained with':24s} {'test accuracy % (mean ± sd  [min-max])':40s} s/run")
    for name, kwargs in KINDS.items():
        accs, start = [], time.perf_counter()
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            result = distill(
                small_student(), teacher, (x, y), epochs=epochs, batch_size=32,
                learning_rate=2e-3, feature_pairs=PAIRS, attention_pairs=PAIRS, **kwargs,
            )
            accs.append(accuracy(result.model, xt, yt))
        per_run = (time.perf_counter() - start) / len(seeds)
        print(f"{name:24s} {summary(accs):40s} {per_run:5.1f}", flush=True)


def part_chain(teacher, data, seeds: list[int], epochs: int) -> None:
    from edgeflow.distill import chain

    (x, y), (xt, yt) = data
    print(f"\n## Part 2: prune -> recover ({epochs} epochs, Adam 1e-3) -> QAT (2 epochs, 1e-4) "
          f"-> int8 on LiteRT; {len(seeds)} seeds; recover = fine-tune on labels, or distill "
          "(soft, T=4, a=0.1) from the unpruned teacher")
    print(f"{'pruning':20s} {'recovery':9s} {'after recovery %':28s} {'int8 (LiteRT) %':28s} "
          f"{'params':>7s} {'int8 B':>11s} {'gzip B':>11s}")
    for name, kwargs in CHAINS.items():
        for recover in ("finetune", "distill"):
            rec, final, params, size, gz = [], [], set(), [], []
            for seed in seeds:
                keras.utils.set_random_seed(seed)
                result = chain(teacher, (x, y), (xt, yt), recover=recover, epochs=epochs,
                               qat_epochs=2, **kwargs)
                rec.append(result.stage(recover).keras_accuracy)
                final.append(result.stage("int8").tflite_accuracy)
                params.add(result.stage(recover).params)
                size.append(result.stage("int8").size_bytes)
                gz.append(result.stage("int8").gzip_bytes)
            print(f"{name:20s} {recover:9s} {summary(rec):28s} {summary(final):28s} "
                  f"{'/'.join(map(str, sorted(params))):>7s} {_span(size):>11s} {_span(gz):>11s}",
                  flush=True)


def _span(values: list[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def part_temperature(teacher, data, seeds: list[int], epochs: int) -> None:
    """Recovery of the 90 %-magnitude-pruned teacher: fine-tuning vs soft labels at T, a."""
    from edgeflow import prune

    (x, y), (xt, yt) = data
    print(f"\n## Part 3: recovering the 90%-magnitude-pruned teacher for {epochs} epochs "
          f"(Adam 1e-3; zeros kept), {len(seeds)} seeds: fine-tune vs soft labels")
    pruned = {}
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        pruned[seed] = prune.magnitude(teacher, 0.9, data=(x, y), epochs=2).model
    print(f"right after pruning: {summary([accuracy(m, xt, yt) for m in pruned.values()])}")
    settings = [("fine-tune", ()), ("soft T=1 a=0.1", {"temperature": 1.0}),
                ("soft T=2 a=0.1", {"temperature": 2.0}), ("soft T=4 a=0.1", {"temperature": 4.0}),
                ("soft T=4 a=0.5", {"temperature": 4.0, "alpha": 0.5})]
    for name, kw in settings:
        accs = []
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            result = distill(pruned[seed], teacher, (x, y), epochs=epochs, learning_rate=1e-3,
                             losses=("soft",) if kw else (), **(kw or {}))
            accs.append(accuracy(result.model, xt, yt))
        print(f"{name:18s} {summary(accs)}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds of part 1")
    parser.add_argument("--epochs", type=int, default=30, help="student epochs of part 1")
    parser.add_argument("--chain-seeds", type=int, default=3)
    parser.add_argument("--chain-epochs", type=int, default=10, help="recovery epochs of part 2")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--part", choices=["kinds", "chain", "temperature", "all"], default="all",
                        help="all = kinds + chain; temperature is run only when named")
    args = parser.parse_args(argv)
    tf.get_logger().setLevel("ERROR")  # Keras's retracing notices between runs
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
    data = digits(test_fraction=0.25, seed=0)
    (x, y), _ = data
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    teacher = train_teacher(x, y, args.teacher_epochs)
    if args.part in ("kinds", "all"):
        part_kinds(teacher, data, seeds, args.epochs)
    if args.part in ("chain", "all"):
        part_chain(teacher, data, list(range(args.chain_seeds)), args.chain_epochs)
    if args.part == "temperature":
        part_temperature(teacher, data, list(range(args.chain_seeds)), args.chain_epochs)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
