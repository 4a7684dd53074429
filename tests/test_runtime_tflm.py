"""TFLM in a child process: the measured arena is minimal, aborts are contained and explained."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.errors import EdgeflowError, RuntimeCrash
from edgeflow.runtime import litert, tflm


def softmax_head(classes: int, logit_scale: float) -> keras.Model:
    """Conv → GAP → Dense → Softmax; the Dense kernel scaled so the logits span ~logit_scale."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(classes)
    outputs = keras.layers.Softmax()(dense(x))
    model = keras.Model(inputs, outputs)
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * logit_scale, bias * 0])
    return model


@pytest.fixture(scope="module")
def collapsed_softmax(digits):
    """A small int8 model whose logits span ~1e-6: below what TFLM's int8 softmax accepts."""
    (x_tr, _), _ = digits
    return convert(softmax_head(10, 1e-6), "int8", x_tr[:64])


def _tflm_children() -> list[int]:
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            cmd = Path(f"/proc/{pid}/cmdline")
            if cmd.exists() and b"_tflm_child" in cmd.read_bytes():
                pids.append(int(pid))
    return pids


def test_measured_arena_is_minimal(int8_cnn, capfd):
    m = tflm.measure_arena(int8_cnn)
    assert m.status == "ok", m.message
    assert m.arena_bytes % 16 == 0 and m.pointer_bytes == 8
    b = m.breakdown
    assert b["persistent"] + b["non_persistent"] == b["total"] <= m.arena_bytes
    assert "TfLiteEvalTensor data" in b["kinds"]
    assert tflm.probe(int8_cnn, m.arena_bytes).status == "ok"
    smaller = tflm.probe(int8_cnn, m.arena_bytes - 16)
    assert smaller.status == "failed" and "cannot allocate" in smaller.message
    out, err = capfd.readouterr()
    assert out == "" and "RecordingMicroAllocator" not in err  # C++ output stays in the child


def test_tflm_predict_agrees_with_litert(int8_cnn, digits):
    _, (x_te, _) = digits
    x = x_te[:100]
    micro = tflm.predict(int8_cnn, x)
    lite = litert.predict(int8_cnn, x)
    assert micro.shape == lite.shape
    # Same int8 model, different kernels: TFLM's softmax is gemmlowp fixed point, LiteRT's
    # a lookup table, so a few outputs differ by a step or more of 1/256 (max 4 seen).
    steps = np.abs(micro - lite) * 256
    assert np.mean(steps < 0.5) >= 0.9
    assert steps.max() <= 8
    assert np.mean(micro.argmax(1) == lite.argmax(1)) >= 0.99


@pytest.mark.parametrize("classes", [2, 10])
def test_softmax_abort_is_predicted_from_the_flatbuffer(classes, digits):
    (x_tr, _), _ = digits
    healthy = convert(softmax_head(classes, 1.0), "int8", x_tr[:64])
    assert tflm.known_aborts(healthy) == []
    assert tflm.measure_arena(healthy).status == "ok"
    collapsed = convert(softmax_head(classes, 1e-6), "int8", x_tr[:64])
    causes = tflm.known_aborts(collapsed)
    assert len(causes) == 1 and causes[0].startswith("SOFTMAX")
    m = tflm.measure_arena(collapsed)
    assert m.status == "aborted" and "SIGABRT" in m.message and "SOFTMAX" in m.message


def test_abort_raises_runtime_crash_in_predict(collapsed_softmax, digits):
    _, (x_te, _) = digits
    with pytest.raises(RuntimeCrash, match="SIGABRT"):
        tflm.predict(collapsed_softmax, x_te[:3])
    assert issubclass(RuntimeCrash, EdgeflowError)
    assert _tflm_children() == []


@pytest.mark.slow
def test_mobilenet_v2_softmax_head_aborts_without_crashing_the_caller(mobilenet_v2_int8):
    m = tflm.measure_arena(mobilenet_v2_int8)
    assert m.status == "aborted", m
    assert m.arena_bytes is None
    assert "SIGABRT" in m.message and "SOFTMAX" in m.message and "\n" not in m.message
    assert tflm.known_aborts(mobilenet_v2_int8)
    assert os.getpid() > 0  # still here


def test_predict_stops_a_model_that_never_ends_at_its_cpu_budget():
    """TFLM's predict child may use N × (cpu_seconds + stated MACs / PREDICT_MACS_PER_CPU_SECOND)
    of CPU; a WHILE that never ends (no MACs) meets it and the error says so in one line."""
    from _models import endless_while

    before = os.times()
    with pytest.raises(RuntimeCrash) as err:
        tflm.predict(endless_while(), np.zeros((3, 4), np.float32), cpu_seconds=0.5)
    after = os.times()
    assert str(err.value) == (
        "TFLM used more than 1.5 s of CPU on 3 samples (the budget: 0.5 s per sample + 1 s per 1e8 of the 0 MACs "
        "the file's operators state; child process stopped): the file asks for far more work than it states (an "
        "enlarged shape) or never ends; cpu_seconds=None lifts the limit")
    assert after.children_user + after.children_system - before.children_user - before.children_system < 4
    assert _tflm_children() == []


def test_arena_search_and_probe_stop_a_model_that_never_ends_at_each_trys_cpu_budget():
    """Each arena size the search tries (and a probe's one) may use cpu_seconds + stated
    MACs / PREDICT_MACS_PER_CPU_SECOND of CPU; a WHILE that never ends ends the search at its
    first try with status timeout and the one line, instead of running until the wall-clock
    timeout (300 s)."""
    from _models import endless_while

    model = endless_while()
    line = ("TFLM used more than 0.5 s of CPU on 1 sample (the budget: 0.5 s per sample + 1 s per 1e8 of the 0 MACs "
            "the file's operators state; child process stopped): the file asks for far more work than it states (an "
            "enlarged shape) or never ends; cpu_seconds=None lifts the limit")
    before = os.times()
    searched = tflm.measure_arena(model, cpu_seconds=0.5)
    probed = tflm.probe(model, 4096, cpu_seconds=0.5)
    after = os.times()
    assert (searched.status, searched.arena_bytes, searched.message) == ("timeout", None, line)
    assert (probed.status, probed.message) == ("timeout", line)
    assert after.children_user + after.children_system - before.children_user - before.children_system < 8
    assert _tflm_children() == []


def test_timeout_kills_the_child(int8_cnn):
    m = tflm.measure_arena(int8_cnn, timeout=0.05)
    assert m.status == "timeout" and m.arena_bytes is None
    assert _tflm_children() == []


@pytest.mark.parametrize("bad", [b"", b"TFL3" * 4, "missing.tflite"])
def test_bad_model_is_an_edgeflow_error(bad):
    with pytest.raises(EdgeflowError):
        tflm.measure_arena(bad)
    with pytest.raises(EdgeflowError):
        tflm.predict(bad, np.zeros((1, 8, 8, 1), np.float32))


def test_predict_bad_shape_and_small_arena(int8_cnn):
    with pytest.raises(EdgeflowError, match=r"is \(N, 8, 8, 1\)"):
        tflm.predict(int8_cnn, np.zeros((2, 9, 9, 1), np.float32))
    with pytest.raises(EdgeflowError, match="cannot allocate the model in an arena of 1024 bytes"):
        tflm.predict(int8_cnn, np.zeros((2, 8, 8, 1), np.float32), arena_size=1024)
