"""Weight clustering (TF-MOT) and TFLM table compression of the clustered int8 model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from edgeflow.cluster import cluster, distinct_values
from edgeflow.errors import EdgeflowError


@pytest.fixture(scope="module")
def clustered(trained_cnn, digits):
    (x_tr, y_tr), _ = digits
    return cluster(trained_cnn, 16, per_layer={"conv1": 4, "logits": 0}, data=(x_tr, y_tr), epochs=1)


@pytest.fixture(scope="module")
def clustered_int8(clustered, digits):
    from edgeflow.convert import convert

    (x_tr, _), _ = digits
    return convert(clustered.model, "int8", x_tr[:100])


def test_each_kernel_keeps_at_most_its_clusters(clustered, trained_cnn):
    assert clustered.clusters == {"conv1": 4, "conv2": 16, "fc1": 16}
    values = distinct_values(clustered.model)
    assert values["conv1"] <= 4 and values["conv2"] <= 16 and values["fc1"] <= 16
    assert clustered.distinct_values == {k: values[k] for k in ("conv1", "conv2", "fc1")}
    assert values["logits"] == distinct_values(trained_cnn)["logits"] > 16  # left alone
    assert not clustered.preserve_sparsity and len(clustered.history["loss"]) == 1


def test_int8_tables_are_bit_identical_on_tflm_and_smaller(clustered_int8, digits):
    from edgeflow.runtime import tflm
    from edgeflow.tflite import parse
    from edgeflow.tflite.lut import DECODE_OP, compress_tables, table_candidates

    _, (x_te, _) = digits
    data = clustered_int8
    info = parse(data)
    choices, _ = table_candidates(data)
    by_shape = {c.shape: c for c in choices}
    conv1 = by_shape[(16, 3, 3, 1)]
    assert (conv1.bits, conv1.per_channel, conv1.axis) == (2, True, 0) and conv1.values <= 4
    assert by_shape[(32, 3, 3, 16)].bits == 4 and by_shape[(32, 512)].bits == 4
    out, result = compress_tables(data, x_te[:16])
    assert {c.tensor for c in result.compressed} == {c.tensor for c in choices}
    assert result.size_after == len(out) < 0.75 * len(data)
    assert DECODE_OP in {op.name for op in parse(out).ops} and len(parse(out).ops) > len(info.ops)
    assert np.array_equal(tflm.predict(out, x_te[:32]), tflm.predict(data, x_te[:32]))


def test_table_layout_must_follow_the_quantization_on_tflm(clustered_int8, digits):
    """The TFLM decoder takes the number of tables from the tensor's quantization, not from
    the layout the compressor records: a per-tensor table on a per-channel tensor decodes
    wrongly (tflite.lut module docstring); compress_tables never chooses it."""
    from dataclasses import replace

    from edgeflow.runtime import tflm
    from edgeflow.tflite.lut import _compress, table_candidates

    _, (x_te, _) = digits
    data = clustered_int8
    conv2 = next(c for c in table_candidates(data)[0] if c.shape == (32, 3, 3, 16))
    reference = tflm.predict(data, x_te[:16])
    assert np.array_equal(tflm.predict(_compress(data, [conv2]), x_te[:16]), reference)
    wrong = replace(conv2, per_channel=False, axis=None, bits=7)  # <= 128 values over the tensor
    assert not np.array_equal(tflm.predict(_compress(data, [wrong]), x_te[:16]), reference)


def test_bad_arguments_are_one_clear_error(trained_cnn):
    with pytest.raises(EdgeflowError, match="matches no layer with weights"):
        cluster(trained_cnn, 8, per_layer={"nothing*": 4})
    with pytest.raises(EdgeflowError, match="unknown centroid initialisation 'kmeans'"):
        cluster(trained_cnn, 8, init="kmeans")
    with pytest.raises(EdgeflowError, match="needs training data"):
        cluster(trained_cnn, 8, qat=True)


def test_cluster_cli_writes_the_model_and_json(trained_cnn, digits, tmp_path):
    from edgeflow.cli import main
    from edgeflow.models import load_model

    (x_tr, y_tr), _ = digits
    trained_cnn.save(tmp_path / "cnn.keras")
    out = tmp_path / "clustered.keras"
    result = CliRunner().invoke(main, ["cluster", str(tmp_path / "cnn.keras"), "-o", str(out),
                                       "--clusters", "8", "--layer", "logits=0", "--init", "linear",
                                       "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)["result"]
    assert payload["clusters"] == {"conv1": 8, "conv2": 8, "fc1": 8}
    assert distinct_values(load_model(out))["fc1"] <= 8
    bad = CliRunner().invoke(main, ["cluster", str(tmp_path / "cnn.keras"), "-o", str(tmp_path / "x.keras"),
                                    "--clusters", "1"])
    assert bad.exit_code == 2 and not (tmp_path / "x.keras").exists()


def test_export_lut_compresses_the_c_array_and_the_resolver_registers_decode(clustered_int8, tmp_path):
    from edgeflow.cli import main
    from edgeflow.deploy.mcu import DECODE_CALL, resolver_calls
    from edgeflow.tflite import parse

    (tmp_path / "c.tflite").write_bytes(clustered_int8)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "c.tflite"), "--format", "c", "--lut",
                                       "-o", str(tmp_path / "model"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)["result"]
    assert {c["bits"] for c in payload["lut"]["compressed"]} == {2, 4}
    assert payload["size_bytes"] < payload["slim"]["size_after"] < payload["slim"]["size_before"]
    source = (tmp_path / "model.cc").read_text()
    tflite = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", source))
    assert len(tflite) == payload["size_bytes"]
    assert DECODE_CALL in resolver_calls(op.name for op in parse(tflite).ops)


def test_cluster_recipe_stage_then_tables_on_tflm(tmp_path):
    from edgeflow.pipeline import run_recipe
    from edgeflow.tflite import parse
    from edgeflow.tflite.lut import DECODE_OP

    result = run_recipe("recipes/cluster.yaml", output_dir=tmp_path, verbose=0,
                        overrides=["stages.0.epochs=3", "stages.1.epochs=1"])
    rec = {r.stage: r for r in result.records}
    assert max(rec["cluster"].extra["distinct_values"].values()) <= 16
    convert = rec["convert"]
    assert convert.extra["lut"].endswith("left") and not convert.extra["lut"].startswith("0 ")
    tflite = (tmp_path / convert.artifact.split("/")[-1]).read_bytes()
    assert DECODE_OP in {op.name for op in parse(tflite).ops}
    assert convert.tflite_accuracy > 0.8 and convert.size_bytes == len(tflite)


def test_arena_limit_leaves_the_largest_decoded_weight_uncompressed(trained_cnn, digits):
    """Between the int8 arena (6,016 B on this host) and the full-compression one (20,496 B):
    the FULLY_CONNECTED weight (16,384 B decoded) stays int8, both CONV_2D filters go in tables."""
    from _models import table_compressed

    from edgeflow.runtime import tflm
    from edgeflow.tflite.lut import compress_tables

    _, (x_te, _) = digits
    plain, packed, _ = table_compressed(trained_cnn, digits)
    assert tflm.measure_arena(plain).arena_bytes == 6_016
    assert tflm.measure_arena(packed).arena_bytes == 20_496
    out, result = compress_tables(plain, x_te[:8], max_arena=12_000)
    assert sorted(c.shape for c in result.compressed) == [(16, 3, 3, 1), (32, 3, 3, 16)]
    fc = next(t for t in result.left if t["reason"].startswith("decoded"))
    assert fc["reason"] == "decoded 16,384 B would raise the arena to 20,496 B > --lut-max-arena 12,000"
    assert [t for t in result.left if t["reason"].startswith("decoded")] == [fc]
    assert tflm.measure_arena(out).arena_bytes == 11_040
    assert len(packed) < len(out) < len(plain)
    assert np.array_equal(tflm.predict(out, x_te), tflm.predict(plain, x_te))
    same, result = compress_tables(plain, x_te[:8], max_arena="same")  # even conv1's 144 B adds 208 B
    assert same == plain and not result.compressed
    assert [t["reason"] for t in result.left if t["reason"].startswith("decoded")][-1] == (
        "decoded 144 B would raise the arena to 6,224 B > the uncompressed model's 6,016")
    with pytest.raises(EdgeflowError, match="max_arena must be a positive integer"):
        compress_tables(plain, max_arena=0)
