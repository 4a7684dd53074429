"""plan_memory and estimate_arena: invariants of the plan, alignment, pointer width, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.tflite import estimate_arena, parse, plan_memory
from edgeflow.tflite.memory import lifetimes
from edgeflow.tflite.reader import ModelInfo, OpInfo, TensorInfo


@pytest.fixture(scope="module")
def cnn_info(int8_cnn):
    return parse(int8_cnn)


def _live_bytes(plan, scope):
    return sum(b.size for b in plan.buffers if b.first <= scope <= b.last)


def test_plan_is_valid_and_tight(cnn_info):
    plan = plan_memory(cnn_info)
    # every activation is planned once; weights and biases are not
    planned = {b.tensor for b in plan.buffers}
    activations = {t.index for t in cnn_info.tensors if not t.is_constant}
    assert planned == activations
    for b in plan.buffers:
        assert b.size % 16 == 0 and b.size >= cnn_info.tensors[b.tensor].nbytes
        assert b.offset % 16 == 0
    # no two buffers alive at the same time share memory
    for i, a in enumerate(plan.buffers):
        for b in plan.buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
    # the peak is at least what is alive at the busiest moment, and never more than all
    busiest = max(_live_bytes(plan, s) for s in range(len(cnn_info.ops) + 1))
    assert busiest <= plan.peak_bytes <= sum(b.size for b in plan.buffers)
    assert plan.peak_bytes == max(b.offset + b.size for b in plan.buffers)


def test_lifetimes_follow_tflm_scopes(cnn_info):
    spans = lifetimes(cnn_info)
    end = len(cnn_info.ops)
    assert spans[cnn_info.inputs[0].index][0] == 0  # inputs exist before the first op
    assert spans[cnn_info.outputs[0].index][1] == end  # outputs live to the end
    for op in cnn_info.ops:
        for t in op.outputs:
            assert spans[t][0] == op.index + 1  # op i runs in scope i + 1
        for t in op.inputs:
            if t >= 0 and not cnn_info.tensors[t].is_constant:
                assert spans[t][1] >= op.index + 1


def test_alignment_changes_only_rounding(cnn_info):
    exact = plan_memory(cnn_info, alignment=1)
    aligned = plan_memory(cnn_info, alignment=64)
    sizes = {b.tensor: b.size for b in exact.buffers}
    assert sizes == {t.index: t.nbytes for t in cnn_info.tensors if not t.is_constant}
    assert all(b.size % 64 == 0 for b in aligned.buffers)
    assert exact.peak_bytes <= plan_memory(cnn_info).peak_bytes <= aligned.peak_bytes
    with pytest.raises(ValueError):
        plan_memory(cnn_info, alignment=0)


def _chain(sizes: list[int]) -> ModelInfo:
    """A synthetic chain of ops, tensor i -> op i -> tensor i+1 (int8 activations)."""
    tensors = [TensorInfo(i, f"t{i}", (n,), "int8", n, False) for i, n in enumerate(sizes)]
    ops = [OpInfo(i, "RELU", 1, False, [i], [i + 1], 0, "int8") for i in range(len(sizes) - 1)]
    return ModelInfo(
        size_bytes=0, ops=ops, tensors=tensors, inputs=[tensors[0]], outputs=[tensors[-1]],
        weights_bytes=0, total_macs=0, subgraphs=1, schema_version=3, description="",
    )


def test_greedy_order_and_tie_break():
    # equal sizes: TFLM places the later tensor first, so a chain of three equal buffers
    # followed by a larger one fits in (last equal + larger), not in three buffers
    info = _chain([3072, 3072, 3072, 4096])
    assert plan_memory(info).peak_bytes == 3072 + 4096
    # a plain chain needs two live buffers at a time: the largest neighbouring pair
    info = _chain([160, 320, 48, 640, 16])
    assert plan_memory(info).peak_bytes == 48 + 640
    # a variable tensor is not in the plan (TFLM keeps it in the persistent tail)
    info.tensors[2].is_variable = True
    assert 2 not in {b.tensor for b in plan_memory(info).buffers}
    assert estimate_arena(info).breakdown["variables"] == 48


def test_arena_estimate_by_pointer_width(cnn_info):
    host = estimate_arena(cnn_info, pointer_bytes=8)
    mcu = estimate_arena(cnn_info, pointer_bytes=4)
    assert host.nonpersistent_bytes == mcu.nonpersistent_bytes == plan_memory(cnn_info).peak_bytes
    assert mcu.persistent_bytes < host.persistent_bytes
    for est in (host, mcu):
        assert est.total_bytes == est.nonpersistent_bytes + est.persistent_bytes
        assert est.persistent_bytes == sum(est.breakdown.values())
        assert any(f"{8 * est.pointer_bytes}-bit" in n for n in est.notes)
    # struct arrays scale with the model: 24/12-byte TfLiteEvalTensor, 64/32-byte nodes
    assert host.breakdown["eval_tensors"] == 24 * len(cnn_info.tensors)
    assert mcu.breakdown["eval_tensors"] == 12 * len(cnn_info.tensors)
    assert host.breakdown["nodes"] == 2 * mcu.breakdown["nodes"] == 64 * len(cnn_info.ops)
    json.dumps(host.to_dict())
    with pytest.raises(ValueError):
        estimate_arena(cnn_info, pointer_bytes=2)


def _run(*args):
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def test_cli_table_and_json(tmp_path, int8_cnn, cnn_info):
    path = tmp_path / "cnn.tflite"
    path.write_bytes(int8_cnn)
    result = _run(path)
    assert result.exit_code == 0, result.output
    text = result.output
    for op, version in cnn_info.op_versions().items():
        assert op in text and f"v{version}" in text
    assert f"{cnn_info.total_macs:,} MACs" in text
    assert f"activation plan peak:      {plan_memory(cnn_info).peak_bytes:,} bytes" in text
    assert f"arena (estimated, 32-bit): {estimate_arena(cnn_info).total_bytes:,} bytes" in text
    assert "1x8x8x1" in text and "zero_point=" in text
    data = json.loads(_run(path, "--json").stdout)["result"]
    assert data["memory_plan"]["peak_bytes"] == plan_memory(cnn_info).peak_bytes
    assert data["arena_estimate"]["pointer_bytes"] == 4
    assert data["weights_bytes"] == cnn_info.weights_bytes
    assert data["op_versions"] == cnn_info.op_versions()
    conv = next(op for op in data["ops"] if op["name"] == "CONV_2D")  # enums by name, not integers
    assert conv["options"]["padding"] == "SAME" and conv["options"]["fused_activation_function"] == "RELU"


def test_cli_bad_files_exit_2(tmp_path, int8_cnn):
    (tmp_path / "random.tflite").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp_path / "truncated.tflite").write_bytes(int8_cnn[: len(int8_cnn) // 3])
    (tmp_path / "empty.tflite").write_bytes(b"")
    for name in ("random", "truncated", "empty", "missing"):
        result = _run(tmp_path / f"{name}.tflite")
        assert result.exit_code == 2, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert "Traceback" not in result.output
