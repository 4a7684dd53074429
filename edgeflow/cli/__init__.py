"""The ``edgeflow`` command line: argument parsing and exit codes only.

Each command lives in its own module and is imported only when it runs, so
``edgeflow --help`` and ``edgeflow devices`` start without loading TensorFlow.

Exit status (every command, ``edgeflow.cli._output``): 0 done and fits, 1 done but does not
fit / not compatible / over a limit, 2 bad input, 3 an internal error (a bug: rerun with
--debug and report it). ``--json`` on every command prints one document of the schema in
``edgeflow/schema/output.schema.json``; TensorFlow's start-up noise never reaches stderr
unless ``--debug`` (``edgeflow._quiet``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from edgeflow.errors import EdgeflowError, closest, first_line

# command name -> "module:attribute"; one module per command.
COMMANDS = {
    "check": "edgeflow.cli.check:check",
    "cluster": "edgeflow.cli.cluster:cluster",
    "deploy": "edgeflow.cli.deploy:deploy",
    "devices": "edgeflow.cli.devices:devices",
    "distill": "edgeflow.cli.distill:distill",
    "export": "edgeflow.cli.export:export",
    "firmware": "edgeflow.cli.firmware:firmware",
    "inspect": "edgeflow.cli.inspect:inspect",
    "prune": "edgeflow.cli.prune:prune",
    "quantize": "edgeflow.cli.quantize:quantize",
    "run": "edgeflow.cli.run:run",
    "search": "edgeflow.cli.search:search",
    "validate": "edgeflow.cli.run:validate",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if _available(name))

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            ctx.fail(f"no such command {name!r}{closest(name, self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        from edgeflow import _quiet
        from edgeflow.cli import _output

        args = [*getattr(ctx, "_protected_args", []), *ctx.args]
        debug = ctx.params.get("debug") or "--debug" in sys.argv
        json_mode = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
        command = self._command_name(ctx, args)
        with _quiet.session(debug=debug, json_mode=json_mode) as stream, \
                _output.command_run(command, json_mode, stream):
            try:
                return super().invoke(ctx)
            except EdgeflowError as err:
                if debug:
                    raise
                _output.report_error(err.exit_code, str(err))
                ctx.exit(err.exit_code)
            except click.UsageError as err:
                # One line, like every other bad input; the usage text is one --help away.
                where = "edgeflow"
                if err.ctx is not None:  # the command path, whatever the program was called
                    where += err.ctx.command_path[len(err.ctx.find_root().info_name or ""):]
                _output.report_error(2, f"{err.format_message()} (see '{where} --help')")
                ctx.exit(2)
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise
            except KeyboardInterrupt:
                click.echo("interrupted", err=True)
                ctx.exit(130)
            except Exception as err:  # a bug: one line, with the way to see the traceback
                if debug:
                    raise
                _output.report_error(
                    3,
                    f"internal error {type(err).__name__}: {first_line(err)} "
                    "(rerun with --debug for the traceback and please report it)",
                )
                ctx.exit(3)

    def _command_name(self, ctx, args: list[str]) -> str:
        """The command as typed (``check``, ``deploy mcu``), from the arguments after ``edgeflow``."""
        names: list[str] = []
        group: click.Group = self
        for arg in args:
            if arg.startswith("-"):
                break
            try:
                cmd = group.get_command(ctx, arg)
            except Exception:  # an unknown name: resolve_command reports it
                cmd = None
            if cmd is None:
                break
            names.append(arg)
            if not isinstance(cmd, click.Group):
                break
            group = cmd
        return " ".join(names) or "edgeflow"


def _available(name: str) -> bool:
    module = COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks.")
@click.version_option(package_name="edgeflow")
def main(debug: bool) -> None:
    """edgeflow: Keras models to microcontrollers and edge boards."""

