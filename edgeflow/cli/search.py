"""``edgeflow search``: the most accurate variants of a recipe that fit a board."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, json_option
from edgeflow.ranges import option_type


@click.command()
@click.argument("recipe")
@click.option("--device", help="The board to fit (a profile name; default: the recipe's search.device).")
@click.option("--trials", type=option_type("trials"), help="Finished trials the study should hold (default: search.trials, 20).")
@click.option("--timeout", type=option_type("seconds"), help="Stop starting trials after S seconds.")
@click.option("--workers", type=option_type("workers"), default=1, show_default=True,
              help="Worker processes on this machine sharing the study.")
@click.option("--storage", metavar="URL",
              help="A shared study database (postgresql://user@host/db); default: SQLite in the search folder.")
@click.option("-o", "--output-dir", help="The search folder (default: <recipe output_dir>/search).")
@click.option("--devices-dir", help="A folder of your own board profiles.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key first, e.g. --set stages.0.epochs=3 (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines, only the Pareto front.")
@json_option
def search(recipe, device, trials, timeout, workers, storage, output_dir, devices_dir, overrides, quiet,
           as_json):
    """Search RECIPE's space (its search: section, or one made from its stages) for the most
    accurate models that fit the board; re-running continues the study.

    Exit status 0 when a trial satisfies every constraint, 1 when none does.
    """
    from edgeflow import report
    from edgeflow.search import search as run_search

    result = run_search(
        recipe, device, trials=trials, timeout=timeout, workers=workers, storage=storage,
        output_dir=output_dir, devices_dir=devices_dir, overrides=overrides,
        verbose=0 if (quiet or as_json) else 1, echo=click.echo,
    )
    best = None if result.best is None else result.trial(result.best)
    summary = (f"{len(result.trials)} trials, {len(result.front)} on the front, {result.dropped} dropped early; "
               + ("no trial satisfies every constraint" if best is None else
                  f"best #{best.number}: accuracy {best.figures['accuracy']:.4f}"))
    finish("search", result.to_dict(), text=report.render_search_table(result) if quiet else None,
           exit_code=result.exit_code, model=result.best_artifacts.get("tflite"),
           devices=[result.device_entry()], outputs=[result.output_dir], summary=summary)
