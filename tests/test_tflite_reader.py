"""edgeflow.tflite reader: ops, tensors, quantization, MACs and dtypes against LiteRT and Keras."""

from __future__ import annotations

import json
import math

import flatbuffers
import numpy as np
import pytest

from edgeflow.errors import EdgeflowError
from edgeflow.tflite import parse, read_bytes
from edgeflow.tflite._schema import schema


@pytest.fixture(scope="module")
def cnn_info(int8_cnn):
    return parse(int8_cnn)


def _litert(model: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(  # without XNNPACK, whose delegate node would replace the ops
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    return interp


def test_ops_and_tensors_match_litert(int8_cnn, cnn_info):
    interp = _litert(int8_cnn)
    litert_ops = [d["op_name"] for d in interp._get_ops_details()]
    assert [op.name for op in cnn_info.ops] == litert_ops
    details = {d["index"]: d for d in interp.get_tensor_details()}
    for t in cnn_info.tensors:
        d = details[t.index]
        assert t.shape == tuple(d["shape"]), t.name
        assert t.dtype == np.dtype(d["dtype"]).name
        assert t.scale == pytest.approx(list(d["quantization_parameters"]["scales"]))
        assert t.zero_point == list(d["quantization_parameters"]["zero_points"])
        assert t.nbytes == math.prod(t.shape) * np.dtype(d["dtype"]).itemsize
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    assert [t.index for t in cnn_info.inputs] == [inp["index"]]
    assert [t.index for t in cnn_info.outputs] == [out["index"]]
    assert cnn_info.inputs[0].dtype == "int8" and cnn_info.outputs[0].dtype == "int8"


def test_macs_follow_the_keras_layers(trained_cnn, cnn_info):
    expected = {}
    for layer in trained_cnn.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw, cin, cout = layer.kernel.shape
            expected.setdefault("CONV_2D", []).append(
                math.prod(layer.output_shape[1:]) * kh * kw * cin
            )
        elif kind == "Dense":
            expected.setdefault("FULLY_CONNECTED", []).append(
                layer.kernel.shape[0] * layer.kernel.shape[1]
            )
    for name, macs in expected.items():
        assert [op.macs for op in cnn_info.ops if op.name == name] == macs
    assert cnn_info.total_macs == sum(sum(v) for v in expected.values())
    assert all(op.macs == 0 for op in cnn_info.ops if op.name in ("MAX_POOL_2D", "SOFTMAX"))


def test_weights_versions_and_json(trained_cnn, int8_cnn, cnn_info):
    kernels = sum(
        math.prod(layer.kernel.shape) for layer in trained_cnn.layers if hasattr(layer, "kernel")
    )
    # int8 kernels (1 byte each) plus int32 biases, all inside the file
    assert kernels <= cnn_info.weights_bytes < len(int8_cnn)
    assert cnn_info.size_bytes == len(int8_cnn)
    assert cnn_info.schema_version == 3 and cnn_info.subgraphs == 1
    versions = cnn_info.op_versions()
    assert set(versions) == cnn_info.op_names() == {op.name for op in cnn_info.ops}
    for op in cnn_info.ops:
        assert 1 <= op.version <= versions[op.name] and not op.is_custom
    assert {op.dtype for op in cnn_info.ops} == {"int8"}
    assert cnn_info.float_ops() == []
    data = json.loads(json.dumps(cnn_info.to_dict()))
    assert data["op_counts"]["CONV_2D"] == 2 and data["total_macs"] == cnn_info.total_macs


@pytest.mark.parametrize(
    "mode, io, float_names",
    [
        ("float32", None, {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}),
        ("float16", None, {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"}),
        ("int8", "float32", set()),
    ],
)
def test_float_ops_ignore_quantize_and_dequantize(trained_cnn, digits, mode, io, float_names):
    from edgeflow.convert import convert

    (x_tr, _), _ = digits
    data = x_tr[:50] if mode == "int8" else None
    model = convert(trained_cnn, mode, data, input_type=io, output_type=io)
    info = parse(model)
    names = info.op_names()
    assert {op.name for op in info.float_ops()} == float_names
    if mode == "float16":  # float16 weights are DEQUANTIZEd, then the math is float32
        assert "DEQUANTIZE" in names
        deq_outputs = {t for op in info.ops if op.name == "DEQUANTIZE" for t in op.outputs}
        fed = [op for op in info.ops if set(op.inputs) & deq_outputs]
        assert fed and all(op in info.float_ops() for op in fed)
    if io == "float32":  # float interface, integer compute: the edges convert
        assert {"QUANTIZE", "DEQUANTIZE"} <= names
        assert info.inputs[0].dtype == "float32"


def _rebuild(model: bytes, edit) -> bytes:
    """Unpack with the schema's object API, let ``edit`` change it, pack it again."""
    obj = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    tail = edit(obj) or b""
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()) + tail


def test_builtin_code_is_the_larger_of_the_two_fields(int8_cnn, cnn_info):
    first = cnn_info.ops[0].name  # CONV_2D

    def edit(obj):
        for code in obj.operatorCodes[1:]:
            # what converters write for codes > 127: a placeholder in the old int8 field
            code.deprecatedBuiltinCode = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
            code.builtinCode = schema.BuiltinOperator.STABLEHLO_ADD
        # what files from before schema 3a hold: the code in the old field only
        conv = obj.operatorCodes[obj.subgraphs[0].operators[0].opcodeIndex]
        conv.deprecatedBuiltinCode, conv.builtinCode = getattr(schema.BuiltinOperator, first), 0

    names = {op.name for op in parse(_rebuild(int8_cnn, edit)).ops}
    assert names == {first, "STABLEHLO_ADD"}


def test_buffers_stored_after_the_flatbuffer(int8_cnn, cnn_info):
    """Models over 2 GB keep buffers after the flatbuffer (Buffer.offset/size)."""
    weights = cnn_info.tensors[cnn_info.ops[0].inputs[1]]
    size = weights.nbytes
    blob = bytes(range(256)) * (size // 256 + 1)

    def external(offset: int, appended: int):
        def edit(obj):
            buf = obj.buffers[weights.buffer]
            buf.data, buf.offset, buf.size = None, offset, size
            return blob[:appended]

        return _rebuild(int8_cnn, edit)

    flat_len = len(external(2**40, 0))  # same layout whatever the (non-zero) offset
    model = external(flat_len, size)
    assert len(model) == flat_len + size
    info = parse(model)
    assert info.tensors[weights.index].is_constant
    assert info.weights_bytes == cnn_info.weights_bytes
    with pytest.raises(EdgeflowError, match="truncated or corrupt"):
        parse(external(flat_len, size // 2))  # the external data is cut short


def test_bad_files_give_one_line_errors(tmp_path, int8_cnn):
    cases = {
        "missing": (tmp_path / "missing.tflite", "does not exist"),
        "directory": (tmp_path, "is a directory"),
        "empty": (tmp_path / "empty.tflite", "is empty"),
        "random": (tmp_path / "random.tflite", "no 'TFL3' identifier"),
    }
    (tmp_path / "empty.tflite").write_bytes(b"")
    rng = np.random.default_rng(0)
    (tmp_path / "random.tflite").write_bytes(rng.bytes(4096))
    for path, message in cases.values():
        with pytest.raises(EdgeflowError, match=message) as err:
            read_bytes(path)
        assert "\n" not in str(err.value)
    for cut in (len(int8_cnn) - 1, len(int8_cnn) // 2, 64, 9):
        with pytest.raises(EdgeflowError, match="truncated or corrupt"):
            parse(int8_cnn[:cut])
    for seed in range(20):  # random bytes that carry the identifier: never a crash
        junk = bytearray(np.random.default_rng(seed).bytes(2048))
        junk[4:8] = b"TFL3"
        try:
            parse(bytes(junk))
        except EdgeflowError as err:
            assert "\n" not in str(err)


def test_parse_accepts_paths(tmp_path, int8_cnn, cnn_info):
    path = tmp_path / "cnn.tflite"
    path.write_bytes(int8_cnn)
    assert read_bytes(path) == int8_cnn
    assert parse(path).to_dict() == cnn_info.to_dict() == parse(str(path)).to_dict()


def test_builtin_options_follow_the_keras_layers(int8_cnn, cnn_info):
    act, pad = schema.ActivationFunctionType, schema.Padding
    by_name: dict[str, list[dict]] = {}
    for op in cnn_info.ops:
        by_name.setdefault(op.name, []).append(op.options)
    # Conv2D(3, padding="same") with BatchNorm + ReLU folded in
    for conv in by_name["CONV_2D"]:
        assert conv["padding"] == pad.SAME and conv["stride_w"] == conv["stride_h"] == 1
        assert conv["dilation_w_factor"] == conv["dilation_h_factor"] == 1
        assert conv["fused_activation_function"] == act.RELU
    (pool,) = by_name["MAX_POOL_2D"]  # MaxPooling2D(): 2x2, stride 2
    assert (pool["filter_width"], pool["filter_height"], pool["stride_w"]) == (2, 2, 2)
    fc1, logits = by_name["FULLY_CONNECTED"]  # Dense(relu), Dense(softmax)
    assert fc1["fused_activation_function"] == act.RELU
    assert logits["fused_activation_function"] == act.NONE
    assert by_name["SOFTMAX"] == [{"beta": 1.0}]
    json.dumps(cnn_info.to_dict())  # options are plain values

    def edit(obj):
        for op in obj.subgraphs[0].operators:
            if op.builtinOptionsType == schema.BuiltinOptions.SoftmaxOptions:
                op.builtinOptions.beta = 0.25

    softmax = [op for op in parse(_rebuild(int8_cnn, edit)).ops if op.name == "SOFTMAX"]
    assert [op.options for op in softmax] == [{"beta": 0.25}]


def test_shape_signature_keeps_the_free_batch(trained_cnn, digits):
    from edgeflow.convert import convert

    (x_tr, _), _ = digits
    info = parse(convert(trained_cnn, "int8", x_tr[:50], batch_size=None))  # a variable batch, asked for
    (inp,) = info.inputs
    assert inp.shape == (1, 8, 8, 1) and inp.shape_signature == (-1, 8, 8, 1)
    assert parse(convert(trained_cnn, "int8", x_tr[:50])).inputs[0].shape_signature == (1, 8, 8, 1)
    for t in info.tensors:
        assert len(t.shape_signature) == len(t.shape)
        assert all(s in (d, -1) for s, d in zip(t.shape_signature, t.shape, strict=True))


def test_read_bytes_takes_bytes_or_a_path_only(int8_cnn):
    assert read_bytes(int8_cnn) == read_bytes(bytearray(int8_cnn)) == int8_cnn
    with pytest.raises(EdgeflowError, match="truncated or corrupt"):
        read_bytes(int8_cnn[: len(int8_cnn) // 2])
    with pytest.raises(EdgeflowError, match="expected .tflite bytes or a file path, got int"):
        read_bytes(3)
    with pytest.raises(EdgeflowError, match="got list"):
        parse([int8_cnn])


def test_constant_values_are_the_stored_weights(int8_cnn):
    from edgeflow.tflite import constant_values, parse

    info = parse(int8_cnn)
    kernels = [t for t in info.tensors if t.is_constant and t.dtype == "int8" and len(t.shape) == 4]
    assert kernels
    for t in kernels:
        values = constant_values(int8_cnn, t)
        assert values.dtype == np.int8 and values.size == t.elements
        assert values.reshape(t.shape).shape == t.shape
    activations = [t for t in info.tensors if not t.is_constant]
    assert constant_values(int8_cnn, activations[0]) is None


def test_load_gives_the_bytes_and_the_parse_in_one_read(int8_cnn, tmp_path):
    from edgeflow.tflite import load, parse

    path = tmp_path / "m.tflite"
    path.write_bytes(int8_cnn)
    data, info = load(path)
    assert data == int8_cnn and info == parse(int8_cnn)
