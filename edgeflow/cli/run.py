"""``edgeflow run`` and ``edgeflow validate``: recipes."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, json_option


@click.command()
@click.argument("recipe")
@click.option("-o", "--output-dir", help="Where artifacts go (default: the recipe's output_dir).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set stages.0.epochs=3 (repeatable).")
@click.option("--resume", is_flag=True, help="Reuse artifacts of stages whose recipe is unchanged.")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the final table.")
@json_option
def run(recipe, output_dir, overrides, resume, quiet, as_json):
    """Run RECIPE (a YAML file, or the name of a shipped recipe such as quickstart).

    Exit status 0 when the model fits every checked device, 1 when it does not fit one.
    """
    from edgeflow import report
    from edgeflow.pipeline import run_recipe

    result = run_recipe(
        recipe, output_dir=output_dir, overrides=overrides, resume=resume,
        verbose=0 if (quiet or as_json) else 1, echo=click.echo,
    )
    payload = result.to_dict()
    devices = payload.pop("devices")
    tflite = next((r.artifact for r in reversed(result.records) if r.stage == "convert"), None)
    summary = (f"{len(result.records)} stages" if result.check is None else
               f"{len(result.records)} stages; fits {sum(d['fits'] for d in devices)} of {len(devices)} devices")
    finish("run", payload, text=report.render_run_table(result) if quiet else None,
           exit_code=result.exit_code, model=tflite, devices=devices,
           outputs=[result.output_dir], summary=summary)


@click.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
@json_option
def validate(recipe, overrides, as_json):
    """Check RECIPE without running it: the schema, and every name and path it uses.

    Board names, teacher stages and files, the model (builder or file) and the data file
    with its array names and shapes are checked as `edgeflow run` checks them before any
    work; relative paths are read from the recipe file's folder. Exit status 2 on the
    first problem, with one error line.
    """
    from edgeflow.pipeline import check_recipe

    loaded = check_recipe(recipe, overrides)
    stages = [s.stage for s in loaded.stages]
    text = f"{recipe}: valid recipe {loaded.name!r} ({', '.join(stages)})"
    finish("validate", {"recipe": str(recipe), "name": loaded.name, "stages": stages}, text=text,
           summary=text)
