"""Every numeric option has a range in one place (edgeflow.ranges): a value outside it is a
usage error (exit 2, one line, nothing written) on the command line and in recipes alike."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgeflow.cli import COMMANDS, main
from edgeflow.errors import EdgeflowError
from edgeflow.ranges import RANGES, check
from edgeflow.recipe import load_recipe


def _commands():
    ctx = click.Context(main)
    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        subs = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        yield from subs


def test_every_numeric_option_of_every_command_has_a_range():
    plain = []
    for cmd in _commands():
        for param in cmd.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                plain.append(f"{cmd.name} {param.opts[0]}")
            if param.type.name in ("integer", "float"):
                assert type(param.type).__module__ == "edgeflow.ranges", (cmd.name, param.opts)
    assert plain == []


BAD = [
    (["export", "m.keras", "-o", "{out}", "--num-samples", "0"],
     "Invalid value for '--num-samples': 0 is not an integer >= 1 (calibration samples) "
     "(see 'edgeflow export --help')"),
    (["quantize", "m.keras", "-o", "{out}", "--learning-rate", "-0.001"],
     "Invalid value for '--learning-rate': -0.001 is not a finite number > 0 (the optimizer's step size) "
     "(see 'edgeflow quantize --help')"),
    (["quantize", "m.keras", "-o", "{out}", "--num-samples", "nan"],
     "Invalid value for '--num-samples': nan is not an integer >= 1 (calibration samples) "
     "(see 'edgeflow quantize --help')"),
    (["distill", "--teacher", "t.keras", "--student", "s.keras", "--data", "d.npz", "-o", "{out}",
      "--temperature", "inf"],
     "Invalid value for '--temperature': inf is not a finite number > 0 (softmax temperature) "
     "(see 'edgeflow distill --help')"),
    (["prune", "m.keras", "-o", "{out}.keras", "--sparsity", "1"],
     "Invalid value for '--sparsity': 1 is not a finite number in [0, 1) (fraction of weights set to zero) "
     "(see 'edgeflow prune --help')"),
    (["prune", "m.keras", "-o", "{out}.keras", "--layer", "conv*=1.5"],
     "--layer 'conv*=1.5': 1.5 is not a finite number in [0, 1) (fraction of weights set to zero)"),
    (["deploy", "mcu", "m.tflite", "--board", "nucleo-h743zi", "-o", "{out}", "--arena-bytes", "-4096"],
     "Invalid value for '--arena-bytes': -4096 is not an integer in [1, 4294967295] (tensor arena bytes) "
     "(see 'edgeflow deploy mcu --help')"),
    (["deploy", "rpi", "m.tflite", "pi@board.invalid", "--runs", "0", "--dry-run"],
     "Invalid value for '--runs': 0 is not an integer >= 1 (timed runs) (see 'edgeflow deploy rpi --help')"),
    (["deploy", "coral", "m.tflite", "-o", "{out}", "--port", "70000"],
     "Invalid value for '--port': 70000 is not an integer in [1, 65535] (TCP port) "
     "(see 'edgeflow deploy coral --help')"),
]


@pytest.mark.parametrize(("args", "line"), BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_a_value_out_of_range_is_one_error_line_exit_2_and_nothing_written(args, line, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [a.format(out=out) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {line}\n"
    assert list(tmp_path.iterdir()) == []


def test_recipe_keys_use_the_same_ranges_as_the_options():
    with pytest.raises(EdgeflowError) as err:
        load_recipe("quickstart", ["data.calibration_samples=0"])
    assert str(err.value).endswith(
        "quickstart.yaml: data.calibration_samples: 0 is not an integer >= 1 (calibration samples)")
    with pytest.raises(EdgeflowError) as err:
        load_recipe("quickstart", ["stages.0.learning_rate=.nan"])
    assert str(err.value).endswith(
        "stages.0.learning_rate: nan is not a finite number > 0 (the optimizer's step size)")
    with pytest.raises(EdgeflowError) as err:
        load_recipe("quickstart", ["stages.1.per_layer={conv1: -0.5}"])
    assert str(err.value).endswith(
        "stages.1.per_layer.conv1: -0.5 is not a finite number in [0, 1) (fraction of weights set to zero)")
    assert load_recipe("quickstart", ["stages.0.epochs=0"]).stages[0].epochs == 0


@pytest.mark.parametrize("name", sorted(RANGES))
def test_each_range_refuses_nan_inf_and_booleans_and_keeps_its_bounds(name):
    rng = RANGES[name]
    for bad in (float("nan"), float("inf"), -float("inf"), True):
        assert not rng.contains(bad)
    if rng.low is not None:
        assert rng.contains(rng.kind(rng.low)) is not rng.low_open
        assert not rng.contains(rng.low - 1)
    if rng.high is not None:
        assert rng.contains(rng.kind(rng.high)) is not rng.high_open
        assert not rng.contains(rng.high + 1)
    with pytest.raises(EdgeflowError) as err:
        check(name, float("nan"), "--x")
    assert str(err.value) == f"--x: nan is not {rng.describe()} ({rng.meaning})"


def test_the_python_api_checks_the_same_ranges_before_any_work(tmp_path):
    from edgeflow.convert import convert
    from edgeflow.quantize.stage import quantize_to_tflite

    missing = tmp_path / "never-read.keras"
    with pytest.raises(EdgeflowError) as err:
        convert(missing, "int8", num_samples=0)
    assert str(err.value) == "num_samples: 0 is not an integer >= 1 (calibration samples)"
    with pytest.raises(EdgeflowError) as err:
        quantize_to_tflite(missing, "qat", learning_rate=-1e-3)
    assert str(err.value) == "learning_rate: -0.001 is not a finite number > 0 (the optimizer's step size)"
    from edgeflow.devices import check as check_model
    from edgeflow.firmware import build

    with pytest.raises(EdgeflowError) as err:
        build(tmp_path / "never-read.tflite", cpu="cortex-m4f", timeout=0)
    assert str(err.value) == "timeout: 0 is not a finite number > 0 (seconds each emulated firmware run may take)"
    with pytest.raises(EdgeflowError) as err:
        check_model(tmp_path / "never-read.tflite", firmware=True, firmware_timeout=float("inf"))
    assert str(err.value) == \
        "firmware_timeout: inf is not a finite number > 0 (seconds each emulated firmware run may take)"
