"""Recipe validation: every bad key or value names the file and the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.errors import EdgeflowError
from edgeflow.recipe import PACKAGED, load_recipe, parse_recipe

QUICKSTART = yaml.safe_load((PACKAGED / "quickstart.yaml").read_text())


def _error(mutate) -> str:
    raw = copy.deepcopy(QUICKSTART)
    mutate(raw)
    with pytest.raises(EdgeflowError) as info:
        parse_recipe(raw, "r.yaml")
    return str(info.value)


def test_shipped_recipes_validate():
    for path in PACKAGED.glob("*.yaml"):
        assert load_recipe(path).stages


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.update(stagse=[]), "r.yaml: unknown key 'stagse' (did you mean 'stages'?)"),
        (lambda r: r["stages"][1].update(target_sparsty=0.3),
         "r.yaml: unknown key 'stages.1.target_sparsty' (did you mean 'target_sparsity'?)"),
        (lambda r: r["stages"][1].update(target_sparsity=1.3),
         "r.yaml: stages.1.target_sparsity: 1.3 is not a finite number in [0, 1) (fraction of weights set to zero)"),
        (lambda r: r["stages"][1].update(stage="prun"), "unknown stage 'prun' (did you mean 'prune'?)"),
        (lambda r: r["data"].update(sorce="digits"), "unknown key 'data.sorce' (did you mean 'source'?)"),
        (lambda r: r["stages"].pop(3), "a 'check' stage needs a 'convert' stage before it"),
        (lambda r: r["model"].update(path="m.keras"), "give exactly one of 'builder'"),
    ],
)
def test_errors_name_the_file_and_key(mutate, expected):
    assert expected in _error(mutate)


def test_overrides_and_shipped_name(tmp_path):
    recipe = load_recipe("quickstart", ["stages.0.epochs=3", "data.calibration_samples=50"])
    assert recipe.stages[0].epochs == 3 and recipe.data.calibration_samples == 50
    with pytest.raises(EdgeflowError, match="no such key"):
        load_recipe("quickstart", ["stages.9.epochs=3"])


def test_validate_command(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**QUICKSTART, "modle": {}}))
    runner = CliRunner()
    result = runner.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {bad}: unknown key 'modle' (did you mean 'model'?)"
    assert runner.invoke(main, ["validate", "quickstart"]).exit_code == 0
    missing = runner.invoke(main, ["run", "quickstrat"])
    assert missing.exit_code == 2 and "did you mean 'quickstart'" in missing.output


def test_invalid_yaml_is_reported_with_the_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nstages: [\n")
    with pytest.raises(EdgeflowError, match="broken.yaml: line .* is not valid YAML"):
        load_recipe(bad)


def test_recipe_names_match_the_registries():
    """Names a recipe accepts are the names the library registers (one list of each)."""
    from typing import get_args

    from edgeflow.convert import MODES
    from edgeflow.prune import CRITERIA, SCHEDULES
    from edgeflow.recipe import ConvertStage, PruneStage

    fields = PruneStage.model_fields
    assert set(get_args(fields["criterion"].annotation)) == set(CRITERIA)
    assert set(get_args(fields["schedule"].annotation)) == set(SCHEDULES)
    assert set(get_args(ConvertStage.model_fields["mode"].annotation)) == set(MODES)


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden", "a\\b", "x..y", "", "a" * 65])
def test_a_recipe_name_that_is_not_a_plain_name_is_refused_before_any_work(name, tmp_path, monkeypatch):
    """The name becomes runs/NAME and NN-NAME-int8.tflite: it may not leave those folders."""
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": name, "model": {"builder": "digits_cnn"},
                                      "stages": [{"stage": "train"}]}))
    result = CliRunner().invoke(main, ["run", str(recipe)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {recipe}: name: {name!r} is not a plain name: it names the run folder and files, so use "
        "letters, digits, '.', '_' and '-' (at most 64, no '..', no '/'), e.g. my-model\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]


def test_a_yaml_alias_bomb_is_refused_fast(tmp_path):
    """Nine anchors of nine aliases each stand for 9**9 (387 million) nodes."""
    import time

    lines = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", str(bomb)])
    assert time.perf_counter() - start < 2
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {bomb}: its aliases (*name) expand to more than 100,000 nodes (or refer to themselves): "
        "write the values out, or use fewer nested aliases\n")


def test_yaml_documents_are_bounded_in_size_and_aliases_still_work(tmp_path):
    from edgeflow import _yaml

    big = tmp_path / "big.yaml"
    big.write_text("name: x\ndescription: " + "y" * (1 << 20) + "\n")
    with pytest.raises(EdgeflowError) as err:
        load_recipe(big)
    assert str(err.value) == f"{big} is 1,048,598 bytes; a YAML file edgeflow reads is at most 1,048,576 bytes"
    with pytest.raises(EdgeflowError, match="refer to themselves"):
        _yaml.load("a: &a [1, *a]")
    assert _yaml.load("a: &x {epochs: 2}\nb: *x") == {"a": {"epochs": 2}, "b": {"epochs": 2}}
