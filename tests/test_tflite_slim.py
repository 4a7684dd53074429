"""Slim .tflite files: outputs bit-identical on LiteRT and TFLM, names and metadata gone,
weights stored once and 16-byte aligned."""

from __future__ import annotations

import numpy as np
import pytest
from _models import small_resnet

from edgeflow._keras import keras
from edgeflow.errors import EdgeflowError
from edgeflow.tflite import flash_overhead, litert_twin, parse, slim
from edgeflow.tflite._schema import schema
from edgeflow.tflite.writer import DATA_ALIGNMENT


def _two_inputs() -> keras.Model:
    a = keras.Input((6,), name="a")
    b = keras.Input((4, 4, 1), name="b")
    y = keras.layers.Conv2D(4, 3, activation="relu")(b)
    y = keras.layers.Flatten()(y)
    x = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(a), y])
    return keras.Model([a, b], keras.layers.Dense(3, activation="softmax")(x))


def _convert_two_inputs(model, xa, xb) -> bytes:
    """The TFLite converter on a two-input model (edgeflow.convert calibrates one input)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        {"a": xa[i : i + 1], "b": xb[i : i + 1]} for i in range(len(xa)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def models(int8_cnn, digits):
    from edgeflow.convert import convert

    (x_tr, _), (x_te, _) = digits
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    resnet = convert(small_resnet(), "int8", x_tr[:64])
    two = _two_inputs()
    xa, xb = rng.uniform(-1, 1, (40, 6)).astype("f4"), rng.uniform(-1, 1, (40, 4, 4, 1)).astype("f4")
    pair = _convert_two_inputs(two, xa[:20], xb[:20])
    order = [t.shape[1:] for t in parse(pair).inputs]  # the converter's input order
    return {
        "cnn": (int8_cnn, x_te[:24]),
        "resnet": (resnet, x_te[:24]),
        "two_inputs": (pair, sorted([xa[20:], xb[20:]], key=lambda x: order.index(x.shape[1:]))),
    }


def _equal(a, b) -> bool:
    if isinstance(a, list):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


@pytest.mark.parametrize("name", ["cnn", "resnet", "two_inputs"])
def test_slim_outputs_are_bit_identical_on_litert_and_tflm(models, name):
    from edgeflow.runtime import litert, tflm

    data, x = models[name]
    thin, result = slim(data)
    assert result.size_after == len(thin) < len(data)
    assert _equal(litert.predict(thin, x), litert.predict(data, x))
    assert _equal(tflm.predict(thin, x), tflm.predict(data, x))
    for_tflm, result = slim(data, for_tflm=True)
    assert result.bias_scales_dropped > 0 and result.zero_points_shortened == 0 and len(for_tflm) < len(thin)
    assert _equal(tflm.predict(for_tflm, x), tflm.predict(data, x))
    assert _equal(litert.predict(for_tflm, x, delegates=False), litert.predict(data, x, delegates=False))
    only, result = slim(data, tflm_only=True)
    assert result.zero_points_shortened > 0 and len(only) < len(for_tflm)
    assert [t.zero_point for t in parse(only).tensors if len(t.scale) > 1] == [[0]] * result.zero_points_shortened
    assert _equal(tflm.predict(only, x), tflm.predict(data, x))
    with pytest.raises(EdgeflowError, match=r"^LiteRT cannot load the model: QuantizationParam has 1 "
                                            r"zero_point values and \d+ scale values\. Must have same number\."):
        litert.predict(only, x, delegates=False)
    assert litert_twin(only) == for_tflm and litert_twin(for_tflm) == for_tflm


def test_slim_strips_names_and_metadata_and_keeps_one_aligned_copy_of_each_weight(models):
    data, _ = models["resnet"]
    thin, result = slim(data)
    before, after = parse(data), parse(thin)
    assert [op.name for op in after.ops] == [op.name for op in before.ops]
    assert {t.name for t in after.tensors} == {""} and after.description == ""
    assert [t.shape for t in after.tensors] == [t.shape for t in before.tensors]
    model = schema.Model.GetRootAs(thin, 0)
    assert model.SignatureDefsLength() == 0 and model.MetadataLength() == 0
    assert schema.Model.GetRootAs(data, 0).MetadataLength() > 0
    payloads = []
    for i in range(1, model.BuffersLength()):
        tab = model.Buffers(i)._tab
        start = tab.Vector(tab.Offset(4))
        assert start % DATA_ALIGNMENT == 0
        payloads.append(model.Buffers(i).DataAsNumpy().tobytes())
    assert model.Buffers(0).DataLength() == 0
    assert len(set(payloads)) == len(payloads) and all(payloads)
    assert sorted({t.buffer for t in after.tensors if t.is_constant}) == list(range(1, len(payloads) + 1))
    assert after.weights_bytes == sum(map(len, payloads)) <= before.weights_bytes
    size, weights, percent = flash_overhead(thin)
    assert (size, weights) == (len(thin), after.weights_bytes)
    assert percent == pytest.approx(result.overhead_percent, abs=0.01)
    again, second = slim(thin)
    assert again == thin and second.buffers_merged == second.buffers_dropped == 0


def test_keep_names_keeps_tensor_names_and_signatures(models):
    data, _ = models["two_inputs"]
    named, result = slim(data, keep_names=True)
    assert result.names_kept
    assert [t.name for t in parse(named).tensors] == [t.name for t in parse(data).tensors]
    assert schema.Model.GetRootAs(named, 0).SignatureDefsLength() == 1


def test_inspect_names_operators_and_tensors_by_index_on_a_slim_file(models, tmp_path):
    from click.testing import CliRunner

    from edgeflow.cli import main

    data, _ = models["cnn"]
    path = tmp_path / "slim.tflite"
    path.write_bytes(slim(data)[0])
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "tensor 0" in result.output
    payload = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    import json

    ops = json.loads(payload.output)["result"]["ops"]
    assert [(op["index"], op["name"]) for op in ops][:2] == [(0, "CONV_2D"), (1, "CONV_2D")]


def test_export_slims_the_c_array_by_default_and_keep_names_keeps_names(models, tmp_path):
    import json
    import re

    from click.testing import CliRunner

    from edgeflow.cli import main

    data, _ = models["cnn"]
    (tmp_path / "m.tflite").write_bytes(data)
    runner = CliRunner()
    result = runner.invoke(main, ["export", str(tmp_path / "m.tflite"), "--format", "c", "-o",
                                  str(tmp_path / "model"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)["result"]
    expected, slimmed = slim(data, tflm_only=True)
    assert payload["slim"] == slimmed.to_dict() and payload["size_bytes"] == len(expected)
    assert payload["reorder"]["method"] == "original" and not payload["reorder"]["written"]  # a chain
    body = (tmp_path / "model.cc").read_text()
    assert [int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body)] == list(expected)
    result = runner.invoke(main, ["export", str(tmp_path / "m.tflite"), "-o", str(tmp_path / "n.tflite"),
                                  "--slim", "--keep-names"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "n.tflite").read_bytes() == slim(data, keep_names=True)[0]


def test_byte_breakdown_attributes_every_byte_and_finds_what_each_level_cuts(models):
    from edgeflow.tflite.layout import CATEGORIES, byte_breakdown

    data, _ = models["resnet"]
    thin, for_tflm, only = slim(data)[0], slim(data, for_tflm=True)[0], slim(data, tflm_only=True)[0]
    parts = {name: byte_breakdown(d) for name, d in
             (("converter", data), ("slim", thin), ("for_tflm", for_tflm), ("tflm_only", only))}
    for name, d in (("converter", data), ("slim", thin), ("for_tflm", for_tflm), ("tflm_only", only)):
        assert list(parts[name]) == list(CATEGORIES) and sum(parts[name].values()) == len(d)
        assert parts[name]["weights"] == parse(d).weights_bytes
    assert parts["converter"]["names"] > 0 and parts["slim"]["names"] == 0
    assert parts["converter"]["metadata data"] > 0 and parts["slim"]["metadata data"] == 0
    # the portable level writes each per-channel zero-point vector once per channel count
    # (int64: 4 length bytes + 8 per channel); the TFLM-only level keeps none of them
    counts = {len(t.scale) for t in parse(thin).tensors if len(t.scale) > 1}
    assert parts["slim"]["zero points per-channel"] == sum(4 + 8 * n for n in counts)
    assert parts["tflm_only"]["zero points per-channel"] == 0
    weight_scales = [t.scale for t in parse(only).tensors if len(t.scale) > 1]
    assert parts["tflm_only"]["scales per-channel"] == sum(4 + 4 * len(s) for s in weight_scales)
    assert parts["for_tflm"]["scales per-channel"] < parts["slim"]["scales per-channel"]
