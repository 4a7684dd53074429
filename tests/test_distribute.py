"""tf.distribute from a recipe: a mirrored strategy in this process, and two worker processes
(MultiWorkerMirroredStrategy over gRPC on 127.0.0.1) training one model in step on the CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml

from edgeflow.errors import EdgeflowError
from edgeflow.recipe import parse_recipe

TRAIN = {"stage": "train", "epochs": 1, "batch_size": 128}
PRUNE = {"stage": "prune", "method": "magnitude", "target_sparsity": 0.5, "epochs": 1, "batch_size": 128}
QAT = {"stage": "qat", "epochs": 1, "batch_size": 128}


def _recipe(stages, **extra) -> dict:
    return {
        "name": "dist", "seed": 0, "model": {"builder": "digits_cnn", "kwargs": {"width": 0.25}},
        "data": {"source": "digits", "validation_fraction": 0}, "stages": stages, **extra,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_train_one_model_in_step(tmp_path):
    """Each worker has its own seed, so its own initial weights and its own data split: only
    the strategy (initial values from worker 0, gradients all-reduced) makes the models equal."""
    (tmp_path / "dist.yaml").write_text(yaml.safe_dump(_recipe([TRAIN, PRUNE, QAT], distribute={"strategy": "multi_worker"})))
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    code = ("import sys; from edgeflow.pipeline import run_recipe; "
            "run_recipe(sys.argv[1], output_dir=sys.argv[2], overrides=[sys.argv[3]], verbose=0)")
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                      "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "dist.yaml"), str(tmp_path / f"w{index}"), f"seed={index}"],
            env=env, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    from edgeflow._keras import tfmot
    from edgeflow.models import load_model
    from edgeflow.quantize import custom_objects

    stages = [json.loads((tmp_path / f"w{i}" / "stages.json").read_text()) for i in range(2)]
    for worker in stages:
        assert [worker[k]["record"]["extra"].get("replicas") for k in ("1", "2", "3")] == [2, 2, 2]
    for artifact in ("01-train.keras", "02-prune.keras", "03-qat.h5"):
        with tfmot.quantization.keras.quantize_scope(custom_objects()):
            a, b = (load_model(tmp_path / f"w{i}" / artifact) for i in range(2))
        assert len(a.get_weights()) == len(b.get_weights())
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)


def test_mirrored_strategy_in_this_process(tmp_path):
    from edgeflow.pipeline import run_recipe

    stages = [TRAIN, {"stage": "convert", "mode": "int8"}]
    result = run_recipe(parse_recipe(_recipe(stages, distribute={"strategy": "mirrored", "devices": ["/cpu:0"]})),
                        output_dir=tmp_path, verbose=0)
    assert [r.extra.get("replicas") for r in result.records] == [1, None]
    # converted from plain variables: no collective (all-reduce) op reached the .tflite
    assert result.records[-1].extra["int8"] == "full int8 (input int8, output int8)"


def test_multi_worker_without_tf_config_is_refused_before_work(tmp_path, monkeypatch):
    from edgeflow.pipeline import run_recipe

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(EdgeflowError, match="^distribute: multi_worker needs TF_CONFIG"):
        run_recipe(parse_recipe(_recipe([TRAIN], distribute={"strategy": "multi_worker"})),
                   output_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()
