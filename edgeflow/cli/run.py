"""``edgeflow run`` and ``edgeflow validate``: recipes."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("recipe")
@click.option("-o", "--output-dir", help="Where artifacts go (default: the recipe's output_dir).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set stages.0.epochs=3 (repeatable).")
@click.option("--resume", is_flag=True, help="Reuse artifacts of stages whose recipe is unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only the final table.")
def run(recipe, output_dir, overrides, resume, as_json, quiet):
    """Run RECIPE (a YAML file, or the name of a shipped recipe such as quickstart).

    Exit status 0 when the model fits every checked device, 1 when it does not fit one.
    """
    from edgeflow import report
    from edgeflow.pipeline import run_recipe

    result = run_recipe(
        recipe, output_dir=output_dir, overrides=overrides, resume=resume,
        verbose=0 if (quiet or as_json) else 1, echo=click.echo,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif quiet:
        click.echo(report.render_run_table(result))
    click.get_current_context().exit(result.exit_code)


@click.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
def validate(recipe, overrides):
    """Check RECIPE against the schema without running it."""
    from edgeflow.recipe import load_recipe

    loaded = load_recipe(recipe, overrides)
    stages = ", ".join(s.stage for s in loaded.stages)
    click.echo(f"{recipe}: valid recipe {loaded.name!r} ({stages})")
