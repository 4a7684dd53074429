"""Seeded fuzzing: mutants of valid .tflite files through the reader, ``inspect --json`` and
``check --json`` never raise an unhandled exception, never crash edgeflow, always print a
valid document, and a model LiteRT refuses never fits. ``bench/bench_fuzz.py`` runs 10,000."""

from __future__ import annotations

from collections import Counter

import _fuzz


def test_mutants_are_refused_cleanly_or_handled(int8_cnn, trained_cnn, tmp_path):
    from edgeflow.convert import convert

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "cnn_int8.tflite").write_bytes(int8_cnn)
    (seeds / "cnn_float32.tflite").write_bytes(convert(trained_cnn, "float32"))
    records = _fuzz.run(seeds, 300, seed=14, log=tmp_path / "fuzz.log", check_every=10)
    counts = Counter(r["outcome"] for r in records.values())
    bad = [r for r in records.values() if r["outcome"] not in ("clean_error", "accepted")]
    assert not bad, bad[:5]
    assert len(records) == 300 and counts["clean_error"] > 50 and counts["accepted"] > 50


def test_the_mutator_is_seeded(int8_cnn):
    first = list(_fuzz.mutants({"m": int8_cnn}, 20, seed=3))
    assert first == list(_fuzz.mutants({"m": int8_cnn}, 20, seed=3))
    assert len({data for _, data in first}) == 20 and all(data != int8_cnn for _, data in first)
    assert {what.split(":")[1].split("@")[0] for what, _ in first} == set(_fuzz.KINDS)


def test_an_enum_value_the_schema_does_not_name_is_still_valid_json(int8_cnn, tmp_path):
    """Found by bench/bench_fuzz.py: a bit flip made a CONV_2D's fused activation 66."""
    import flatbuffers
    from _schema import document
    from click.testing import CliRunner

    from edgeflow.cli import main
    from edgeflow.tflite._schema import schema

    model = schema.ModelT.InitFromPackedBuf(int8_cnn, 0)
    model.subgraphs[0].operators[0].builtinOptions.fusedActivationFunction = 66
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "odd.tflite"
    path.write_bytes(bytes(builder.Output()))
    result = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert result.exit_code == 0
    assert document(result.stdout)["result"]["ops"][0]["options"]["fused_activation_function"] == "unknown (66)"


def test_an_operator_without_outputs_is_read_and_judged(int8_cnn, tmp_path):
    """Found by bench/bench_fuzz.py: a FULLY_CONNECTED whose outputs vector length became 0
    (legal for ASSIGN_VARIABLE or CALL_ONCE) made inspect's arena estimate fail."""
    import flatbuffers
    from _schema import document
    from click.testing import CliRunner

    from edgeflow.cli import main
    from edgeflow.tflite._schema import schema

    model = schema.ModelT.InitFromPackedBuf(int8_cnn, 0)
    fc = next(op for op in model.subgraphs[0].operators
              if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED)
    fc.outputs = []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "no-outputs.tflite"
    path.write_bytes(bytes(builder.Output()))
    inspect = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert inspect.exit_code == 0 and document(inspect.stdout)["result"]["arena_estimate"]["total_bytes"] > 0
    check = CliRunner().invoke(main, ["check", str(path), "-d", "all", "--no-measure", "--json"])
    assert check.exit_code == 1
    assert not any(d["fits"] for d in document(check.stdout)["devices"])
