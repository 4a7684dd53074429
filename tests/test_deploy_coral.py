"""Coral Edge TPU: the pre-check on real converted models, the compiler log parser on text
in the format Coral's compiler prints, and the deploy command without a compiler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _schema import document

from edgeflow._keras import keras
from edgeflow.convert import convert
from edgeflow.deploy.coral import (
    compile_model,
    compiler_path,
    deploy_coral,
    parse_compiler_output,
    parse_size,
    precheck,
)
from edgeflow.errors import EdgeflowError


def _calib(n=32, shape=(8, 8, 1)):
    return np.random.default_rng(0).uniform(0, 1, (n, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def leaky_int8():
    """An int8 model whose second op (LEAKY_RELU) is not an Edge TPU operation."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(inp)
    h = keras.layers.LeakyReLU()(h)
    h = keras.layers.Conv2D(8, 3)(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    return convert(keras.Model(inp, out), "int8", _calib())


def test_int8_model_maps_entirely(int8_cnn):
    pc = precheck(int8_cnn)
    assert pc.compatible and pc.full_int8 and pc.static_shapes
    assert pc.first_unsupported is None and pc.problems == []
    assert pc.ops_on_cpu == 0 and pc.ops_on_tpu == len(pc.ops) > 0
    assert all(v.device == "tpu" for v in pc.ops)


def test_float_io_conversions_stay_on_cpu_without_splitting(trained_cnn, digits):
    (x_tr, _), _ = digits
    b = convert(trained_cnn, "int8", x_tr[:100], input_type="float32", output_type="float32")
    pc = precheck(b)
    assert pc.compatible and pc.full_int8
    assert (pc.ops[0].op, pc.ops[0].device) == ("QUANTIZE", "cpu")
    assert (pc.ops[-1].op, pc.ops[-1].device) == ("DEQUANTIZE", "cpu")
    assert all(v.device == "tpu" for v in pc.ops[1:-1]) and pc.ops_on_cpu == 2


def test_float_model_is_refused(trained_cnn):
    pc = precheck(convert(trained_cnn, "float32"))
    assert not pc.compatible and not pc.full_int8
    assert pc.ops_on_tpu == 0 and pc.first_unsupported.index == 0
    assert "float" in pc.first_unsupported.reason
    assert any("not fully 8-bit quantized" in p for p in pc.problems)


def test_first_unsupported_op_sends_the_rest_to_cpu(leaky_int8):
    pc = precheck(leaky_int8)
    assert not pc.compatible and pc.full_int8
    names = [v.op for v in pc.ops]
    k = names.index("LEAKY_RELU")
    assert pc.first_unsupported.index == k and pc.first_unsupported.op == "LEAKY_RELU"
    assert [v.device for v in pc.ops[:k]] == ["tpu"] * k
    # supported ops after it (CONV_2D, FULLY_CONNECTED, SOFTMAX) still run on the CPU
    after = pc.ops[k + 1:]
    assert after and all(v.device == "cpu" for v in after)
    assert "CONV_2D" in [v.op for v in after]
    assert pc.ops_on_tpu == k and pc.ops_on_cpu == len(names) - k


def test_dynamic_shape_is_a_problem():
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, 4))
    out = keras.layers.Dense(3)(inp)
    # edgeflow's convert refuses a free dimension: the file comes from the plain converter
    import tensorflow as tf

    pc = precheck(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert())
    assert not pc.static_shapes and not pc.compatible
    assert any("dynamic tensor sizes" in p for p in pc.problems)


def _edit_options(model: bytes, op_name: str, **fields) -> bytes:
    """``model`` with the builtin options of every ``op_name`` operator changed."""
    import flatbuffers

    from edgeflow.tflite._schema import schema

    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    code = getattr(schema.BuiltinOperator, op_name)
    for op in obj.subgraphs[0].operators:
        if obj.operatorCodes[op.opcodeIndex].builtinCode == code:
            for key, value in fields.items():
                setattr(op.builtinOptions, key, value)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_operator_options_break_documented_limits(int8_cnn):
    """Rules read from the builtin options: dilation equal in x and y, no fused activation
    on pooling (the int8 CNN maps entirely before the edit)."""
    pc = precheck(_edit_options(int8_cnn, "CONV_2D", dilationHFactor=2))
    assert pc.first_unsupported.op == "CONV_2D" and pc.first_unsupported.index == 0
    assert "dilation 2x1 differs in x and y" in pc.first_unsupported.reason
    pc = precheck(_edit_options(int8_cnn, "MAX_POOL_2D", fusedActivationFunction=1))
    assert pc.first_unsupported.op == "MAX_POOL_2D"
    assert "fused activation function" in pc.first_unsupported.reason


# Text in the format edgetpu_compiler prints with -s (see coral.ai/docs/edgetpu/compiler
# and the logs quoted in google-coral/edgetpu issues), written for this test.
STDOUT = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 211 ms.

Input model: leaky_int8.tflite
Input size: 7.20KiB
Output model: out/leaky_int8_edgetpu.tflite
Output size: 31.45KiB
On-chip memory used for caching model parameters: 1.25KiB
On-chip memory remaining for caching model parameters: 7.92MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 6
Operation log: out/leaky_int8_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 1
Number of operations that will run on CPU: 5

Operator                       Count      Status

LEAKY_RELU                     1          Operation not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
SOFTMAX                        1          More than one subgraph is not supported
CONV_2D                        1          Mapped to Edge TPU
CONV_2D                        1          More than one subgraph is not supported
RESHAPE                        1          More than one subgraph is not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# The .log file the compiler writes beside the model (no totals, only the table).
LOGFILE = """Edge TPU Compiler version 15.0.340273435
Input: big.tflite
Output: big_edgetpu.tflite

Operator                       Count      Status

DEPTHWISE_CONV_2D              13         Mapped to Edge TPU
CONV_2D                        28         Mapped to Edge TPU
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
MEAN                           1          Mapped to Edge TPU
DEQUANTIZE                     1          Operation is working on an unsupported data type
"""


def test_parse_compiler_stdout():
    log = parse_compiler_output(STDOUT)
    assert log.version == "16.0.384591198" and log.succeeded
    assert log.input_model == "leaky_int8.tflite" and log.output_model == "out/leaky_int8_edgetpu.tflite"
    assert log.on_chip_used_bytes == 1280
    assert log.on_chip_remaining_bytes == round(7.92 * 1024 * 1024)
    assert log.off_chip_streamed_bytes == 0 and log.parameters == "cached"
    assert (log.subgraphs, log.total_ops, log.ops_on_tpu, log.ops_on_cpu) == (1, 6, 1, 5)
    assert len(log.operators) == 6
    assert [r["op"] for r in log.operators if r["on_tpu"]] == ["CONV_2D"]
    assert log.operators[0]["status"] == "Operation not supported"
    assert json.loads(json.dumps(log.to_dict()))["parameters"] == "cached"


def test_parse_log_file_counts_from_the_table_and_streamed_parameters():
    streamed = STDOUT.replace("streaming uncached model parameters: 0.00B",
                              "streaming uncached model parameters: 3.23MiB")
    log = parse_compiler_output("", LOGFILE)
    assert log.version == "15.0.340273435" and log.input_model == "big.tflite"
    assert (log.ops_on_tpu, log.ops_on_cpu, log.total_ops) == (42, 2, 44)
    assert log.parameters == "unknown"
    s = parse_compiler_output(streamed, LOGFILE)
    assert s.parameters == "streamed" and s.off_chip_streamed_bytes == round(3.23 * 1024**2)
    assert s.ops_on_tpu == 1  # the printed totals win over the table


def test_parse_size_units():
    assert parse_size("0.00B") == 0
    assert parse_size("604.50KiB") == 619008
    assert parse_size("1.00GiB") == 1 << 30
    with pytest.raises(EdgeflowError):
        parse_size("12 parsecs")


def test_compile_skipped_without_compiler(int8_cnn, tmp_path):
    if compiler_path() is not None:
        pytest.skip("edgetpu_compiler is installed here")
    compiled, log, note = compile_model(int8_cnn, tmp_path)
    assert compiled is None and log is None and "compile step skipped" in note
    assert not any(tmp_path.iterdir())


def test_deploy_coral_cli_json_and_dry_run(leaky_int8, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    model = tmp_path / "leaky.tflite"
    model.write_bytes(leaky_int8)
    res = CliRunner().invoke(main, ["deploy", "coral", str(model), "--json"])
    assert res.exit_code == 1, res.output  # not fully compatible: done, but it does not fit
    doc = document(res.stdout)
    rec = doc["result"]
    assert doc["verdict"] == "fail" and doc["devices"][0] == {
        "device": "edge-tpu", "fits": False,
        "verdict": "NOT fully compatible (1 ops on the TPU, 5 on the CPU)"}
    assert rec["precheck"]["first_unsupported"]["op"] == "LEAKY_RELU"
    if compiler_path() is None:
        assert rec["compiled_model"] is None and "skipped" in rec["compile_note"]
    res = CliRunner().invoke(main, ["deploy", "coral", str(model)])
    assert res.exit_code == 1 and "Edge TPU pre-check: NOT fully compatible" in res.output
    res = CliRunner().invoke(main, ["deploy", "coral", str(model), "--host", "mendel@coral.invalid", "--dry-run"])
    assert res.exit_code == 1, res.output
    assert "StrictHostKeyChecking=yes" in res.output and "dry run: nothing was run" in res.output
    r = deploy_coral(leaky_int8, dry_run=True)
    assert r.board is None and r.precheck["ops_on_tpu"] == 1
