"""LiteRT runs a file edgeflow did not make in a child process: same outputs, and a crash or
a refusal is reported, never passed on to edgeflow."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from edgeflow.devices import check
from edgeflow.errors import EdgeflowError, RuntimeCrash
from edgeflow.runtime import litert
from edgeflow.tflite._schema import schema


@pytest.fixture
def foreign(monkeypatch):
    """As if edgeflow had converted nothing in this process: every file is foreign."""
    monkeypatch.setattr(litert, "_MADE", set())
    monkeypatch.setattr(litert, "_PROBED", {})


def _softmax_scale_zero(tflite: bytes) -> bytes:
    """The model with its int8 SOFTMAX output scale set to 0: the reader takes it, LiteRT
    refuses it while allocating (the kernel requires 1/256)."""
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph = model.subgraphs[0]
    out = graph.tensors[graph.outputs[0]]
    out.quantization.scale = np.array([0.0], np.float32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_a_foreign_file_runs_in_a_child_with_the_same_outputs(int8_cnn, digits, foreign):
    _, (x_te, _) = digits
    here = litert._predict_here(int8_cnn, x_te[:40], num_threads=None, batch_size=16, delegates=True)
    assert litert.probe(int8_cnn) == litert.Probe("ok", "", "child process")
    np.testing.assert_array_equal(litert.predict(int8_cnn, x_te[:40], batch_size=16), here)


def test_what_edgeflow_converted_runs_in_process_but_its_probe_in_a_child(int8_cnn):
    assert litert._trusted(int8_cnn)  # predict/evaluate/benchmark run it here
    assert litert.probe(int8_cnn) == litert.Probe("ok", "", "child process")


def _litert_children() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"edgeflow.runtime._litert_child" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_crash_of_litert_is_contained_and_named(int8_cnn, foreign):
    """The child is killed by SIGSEGV while LiteRT runs (a long benchmark): edgeflow raises
    RuntimeCrash naming the signal, and goes on working."""
    killed = []

    def kill_child():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in _litert_children():
                time.sleep(0.5)  # let it load the model and start invoking
                os.kill(pid, signal.SIGSEGV)
                killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=kill_child)
    thread.start()
    with pytest.raises(RuntimeCrash) as err:
        litert.benchmark(int8_cnn, runs=10**9, warmup=0, timeout=120)
    thread.join()
    assert killed and str(err.value) == (
        "LiteRT crashed on the model (SIGSEGV in a child process; edgeflow is unharmed): "
        "the file is damaged or was not made for LiteRT")
    assert litert.probe(int8_cnn).ok  # edgeflow is still here and LiteRT still runs


def test_a_model_litert_refuses_fits_no_board(int8_cnn, foreign):
    bad = _softmax_scale_zero(int8_cnn)
    found = litert.probe(bad)
    assert found.status == "refused"
    assert found.message.startswith("LiteRT cannot allocate the model: ")
    assert "output->params.scale not near 1.f / 256" in found.message
    with pytest.raises(EdgeflowError, match="^LiteRT cannot allocate the model: "):
        litert.predict(bad, np.zeros((1, 8, 8, 1), np.float32))
    report = check(bad, "all", measure=False)
    assert not report.fits and report.exit_code == 1
    for result in report.results:
        assert not result.fits
        assert any(p.startswith(found.message) for p in result.problems), result.device


def test_a_model_planning_gigabytes_is_not_run_and_fits_no_board(int8_cnn, foreign):
    """A corrupted shape can ask for gigabytes (LiteRT would allocate and run it for minutes):
    check does not run LiteRT then, and says so as a problem on every board (also on those whose
    RAM is the host's, where no RAM figure would fail: found by bench_fuzz)."""
    model = schema.ModelT.InitFromPackedBuf(int8_cnn, 0)
    graph = model.subgraphs[0]
    first_conv_out = graph.operators[0].outputs[0]
    graph.tensors[first_conv_out].shape = np.array([1, 8192, 8192, 32], np.int32)  # 2 GiB of int8
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    start = time.perf_counter()
    report = check(bytes(builder.Output()), "all", measure=False)
    assert time.perf_counter() - start < 10
    assert not report.fits
    for result in report.results:
        assert "LiteRT was not run: the model plans 2.0 GiB of activations, more than any board has" \
            in result.problems, result.problems


def test_a_model_whose_one_inference_runs_for_minutes_is_stopped_by_its_cpu_budget(int8_cnn, foreign):
    """A flipped bit in the input shape (8x8 -> 8x8388616, found by bench_fuzz) leaves the
    stored shapes and so the reader's MACs and plan small, but LiteRT sizes every layer from
    the input: one inference would take minutes of CPU. The probe's child gets a CPU budget
    (RLIMIT_CPU) and the probe says what stopped it."""
    model = schema.ModelT.InitFromPackedBuf(int8_cnn, 0)
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].shape = np.array([1, 8, 8388616, 1], np.int32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    before = os.times()
    found = litert.probe(bytes(builder.Output()), cpu_seconds=1)
    after = os.times()
    assert found.status == "timeout"
    assert found.message == ("LiteRT used more than 1 s of CPU to run the model once (child process "
                             "stopped): no board runs it; a damaged file (an enlarged shape) can ask for this")
    # the child's start (about 0.5 s), the budget, and the limit's whole-second rounding
    assert after.children_user + after.children_system - before.children_user - before.children_system < 3.5
    assert litert.probe(int8_cnn, cpu_seconds=1).ok  # the model as converted runs in far less


def test_predict_and_benchmark_stop_a_model_that_never_ends_at_their_cpu_budget(foreign):
    """predict and benchmark children get the probe's budget per sample (a WHILE that never
    ends states no MACs: 0.5 s per sample here) and say what stopped them, in one line."""
    from _models import endless_while

    from edgeflow.tflite import parse

    model = endless_while()
    assert parse(model).total_macs == 0
    tail = ("(the budget: 0.5 s per sample + 1 s per 1e9 of the 0 MACs the file's operators state; child process "
            "stopped): the file asks for far more work than it states (an enlarged shape) or never ends; "
            "cpu_seconds=None lifts the limit")
    for call, line in (
        (lambda: litert.predict(model, np.zeros((2, 4), np.float32), cpu_seconds=0.5),
         f"LiteRT used more than 1 s of CPU on 2 samples {tail}"),
        (lambda: litert.benchmark(model, runs=2, warmup=1, cpu_seconds=0.5),
         f"LiteRT used more than 1.5 s of CPU on 3 samples {tail}"),
    ):
        before = os.times()
        with pytest.raises(RuntimeCrash) as err:
            call()
        after = os.times()
        assert str(err.value) == line
        # the child's start (about 0.5 s), the budget, and the limit's whole-second rounding
        assert after.children_user + after.children_system - before.children_user - before.children_system < 4


def test_the_cpu_budget_grows_with_the_work_the_model_states(int8_cnn):
    """A real model that states much work is not cut short: one CPU second more per
    PROBE_MACS_PER_CPU_SECOND of the MACs its operators state."""
    from edgeflow.tflite import parse

    assert litert._stated_macs(int8_cnn) == parse(int8_cnn).total_macs > 0
    assert litert._stated_macs(b"TFL3 not a model") == 0
    from edgeflow.runtime._child import cpu_budget

    # predict and benchmark: per sample, so a large dataset gets a budget as large
    assert cpu_budget(1000, 5.0, 2 * 10**9, 1e9) == 1000 * 7.0
    assert cpu_budget(1000, None, 2 * 10**9, 1e9) is None
