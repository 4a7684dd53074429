"""``edgeflow run`` and ``edgeflow validate``: recipes."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, force_option, json_option


@click.command()
@click.argument("recipe", required=False)
@click.option("-o", "--output-dir",
              help="The run folder (default: a new runs/<name>/<run id>, linked as runs/<name>/latest).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set stages.0.epochs=3 (repeatable).")
@click.option("--resume", is_flag=False, flag_value="latest", default=None, type=str, metavar="[RUN]",
              help="Continue the latest run (or RUN: a run id or folder), reusing the artifacts of "
              "stages whose recipe is unchanged and whose files are the ones written (SHA-256).")
@force_option
@click.option("-q", "--quiet", is_flag=True,
              help="No progress lines: only the warnings, the comparison and the final table.")
@json_option
def run(recipe, output_dir, overrides, resume, force, quiet, as_json):
    """Run RECIPE (a YAML file, or the name of a shipped recipe such as quickstart).

    Exit status 0 when the model fits every checked device, 1 when it does not fit one.
    """
    if recipe is None:
        hint = (f": --resume took {resume!r} as the run to continue; put the recipe first, "
                f"edgeflow run {resume} --resume" if resume not in (None, "latest") else "")
        raise click.UsageError("Missing argument 'RECIPE'" + hint + ".")
    from edgeflow import report
    from edgeflow.pipeline import run_recipe

    result = run_recipe(
        recipe, output_dir=output_dir, overrides=overrides, resume=resume or False, force=force,
        verbose=0 if (quiet or as_json) else 1, echo=click.echo,
    )
    payload = result.to_dict()
    devices = payload.pop("devices")
    tflite = next((str(result.artifact_path(r)) for r in reversed(result.records)
                   if r.stage == "convert" and r.artifact), None)
    summary = (f"{len(result.records)} stages" if result.check is None else
               f"{len(result.records)} stages; fits {sum(d['fits'] for d in devices)} of {len(devices)} devices")
    finish("run", payload, text=report.render_run_quiet(result) if quiet else None,
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
