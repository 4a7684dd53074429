"""``edgeflow deploy rpi|coral|mcu``: put a model on a board; every command has --dry-run."""

from __future__ import annotations

import click

from edgeflow.cli._output import finish, force_option, json_option
from edgeflow.ranges import option_type


def _ssh_options(f):
    """The SSH options shared by ``rpi`` and ``coral``."""
    options = [
        click.option("--user", help="Remote user (default: from ~/.ssh/config, else your user name)."),
        click.option("--port", type=option_type("port"),
                     help="SSH port (default: from ~/.ssh/config, else 22)."),
        click.option("--identity", "-i", help="Private key file (default: ~/.ssh/config / ssh-agent)."),
        click.option("--known-hosts", help="known_hosts file to check the board's host key against."),
        click.option("--ssh-config", help="SSH config file to use instead of ~/.ssh/config."),
        click.option("--accept-new-host-key", is_flag=True,
                     help="Trust a board seen for the first time and record its key (a changed key is still refused)."),
        click.option("--remote-python", default="python3", show_default=True, help="Python on the board."),
        click.option("--remote-dir", default="edgeflow-deploy", show_default=True,
                     help="Directory on the board (relative to the login directory unless absolute)."),
        click.option("--skip-install", is_flag=True,
                     help="Do not install ai-edge-litert on the board; fail if no runtime is there."),
        click.option("--runs", type=option_type("runs"), default=50, show_default=True,
                     help="Timed runs on the board."),
        click.option("--warmup", type=option_type("warmup"), default=5, show_default=True,
                     help="Untimed warm-up runs."),
        click.option("--threads", type=option_type("threads"),
                     help="Interpreter threads on the board (default: the runtime's)."),
        click.option("--input", "sample", help="Input sample .npy (float samples are quantized); default random."),
        click.option("--dry-run", is_flag=True, help="Print every step and command; run nothing."),
        json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _target(host, user, port, identity, known_hosts, ssh_config, accept_new_host_key):
    from edgeflow.deploy.ssh import SSHTarget

    return SSHTarget(host, user=user, port=port, identity=identity, known_hosts=known_hosts,
                     ssh_config=ssh_config, accept_new_host_key=accept_new_host_key)


def _board_kwargs(remote_python, remote_dir, skip_install, runs, warmup, threads, sample):
    return dict(remote_python=remote_python, remote_dir=remote_dir, install=not skip_install, runs=runs,
                warmup=warmup, threads=threads, sample=sample)


def _board_entry(result) -> dict:
    """The envelope's device entry for a board run: it fits when its output matches the host's."""
    cor = result.correctness or {}
    match = bool(cor.get("match"))
    lat = result.latency or {}
    verdict = ("output matches the host" if match else "output DIFFERS from the host")
    if lat.get("median_ms") is not None:
        verdict += f"; median {lat['median_ms']:.3f} ms"
    return {"device": result.target, "fits": match, "verdict": verdict, "host": result.host,
            "latency": result.latency, "correctness": result.correctness}


@click.group()
def deploy():
    """Put a model on a board: a Raspberry Pi, a Coral Edge TPU, or a microcontroller project."""


@deploy.command()
@click.argument("model")
@click.argument("host")
@_ssh_options
def rpi(model, host, user, port, identity, known_hosts, ssh_config, accept_new_host_key, remote_python,
        remote_dir, skip_install, runs, warmup, threads, sample, dry_run, as_json):
    """Copy MODEL (.tflite) to HOST over SSH, benchmark it there and check it against the host.

    HOST is a host name, user@host or an alias from ~/.ssh/config. Host keys are always
    checked (StrictHostKeyChecking=yes, unless --accept-new-host-key). Exit status 1 when
    the board's output differs from the host's by more than one quantization step.
    """
    from edgeflow.deploy.rpi import deploy_rpi, summary_table

    target = _target(host, user, port, identity, known_hosts, ssh_config, accept_new_host_key)
    result = deploy_rpi(model, target, dry_run=dry_run, log=click.echo,
                        **_board_kwargs(remote_python, remote_dir, skip_install, runs, warmup, threads, sample))
    if dry_run:
        finish("deploy rpi", result.to_dict(), text="dry run: nothing was run", model=model,
               summary="dry run: nothing was run")
    entry = _board_entry(result)
    finish("deploy rpi", result.to_dict(), text=summary_table(result), exit_code=0 if entry["fits"] else 1,
           model=model, devices=[entry], summary=f"{result.target}: {entry['verdict']}")


@deploy.command()
@click.argument("model")
@click.option("--host", help="A Coral Dev Board to benchmark on over SSH (host, user@host or ~/.ssh/config alias).")
@click.option("-o", "--out-dir", help="Where the compiled model goes (default: beside MODEL).")
@force_option
@_ssh_options
def coral(model, host, out_dir, force, user, port, identity, known_hosts, ssh_config, accept_new_host_key,
          remote_python, remote_dir, skip_install, runs, warmup, threads, sample, dry_run, as_json):
    """Pre-check MODEL for the Edge TPU, compile it (if edgetpu_compiler is installed), and
    benchmark it on a Dev Board with --host.

    Exit status 1 when the model is not fully Edge TPU compatible (some operators would run
    on the CPU) or the board's output differs from the host's.
    """
    from edgeflow.deploy.coral import deploy_coral, precheck_table
    from edgeflow.deploy.rpi import BoardResult, summary_table

    target = _target(host, user, port, identity, known_hosts, ssh_config, accept_new_host_key) if host else None
    kwargs = _board_kwargs(remote_python, remote_dir, skip_install, runs, warmup, threads, sample) if host else {}
    result = deploy_coral(model, out_dir=out_dir, target=target, dry_run=dry_run, force=force, log=click.echo,
                          **kwargs)
    pc = result.precheck
    verdict = (f"{'compatible' if pc['compatible'] else 'NOT fully compatible'} "
               f"({pc['ops_on_tpu']} ops on the TPU, {pc['ops_on_cpu']} on the CPU)")
    lines = [precheck_table(pc), f"Edge TPU pre-check: {verdict}"]
    devices = [{"device": "edge-tpu", "fits": bool(pc["compatible"]), "verdict": verdict}]
    if result.board and not dry_run:
        board = BoardResult(**result.board)
        lines.append(summary_table(board))
        devices.append(_board_entry(board))
    if dry_run:
        lines.append("dry run: nothing was run")
    fits = all(d["fits"] for d in devices)
    finish("deploy coral", result.to_dict(), text="\n".join(lines), exit_code=0 if fits else 1, model=model,
           devices=devices, outputs=[result.compiled_model] if result.compiled_model else [],
           summary=f"Edge TPU pre-check: {verdict}")


def _no_force(ctx, param, value):
    if value:
        raise click.UsageError("deploy mcu has no --force: pass --update to replace the files of a project "
                               "edgeflow generated in -o, --ignore-check to write a project whose model fails "
                               "its check", ctx)


@deploy.command()
@click.argument("model")
@click.option("--board", required=True, help="Microcontroller profile name (see 'edgeflow devices').")
@click.option("-o", "--out-dir", required=True,
              help="Project folder to create (new or empty; with --update, one edgeflow generated before).")
@click.option("--arena-margin", type=option_type("arena_margin"), default=0.25, show_default=True,
              help="Arena margin: a fraction of the measured arena (plus 1 KiB).")
@click.option("--arena-bytes", type=option_type("arena_bytes"),
              help="Use this measured arena instead of running check.")
@click.option("--dry-run", is_flag=True, help="Print every step and file; measure and write nothing.")
@click.option("--update", is_flag=True,
              help="Replace the files of a project edgeflow generated in -o before (other files are kept; "
                   "a folder edgeflow did not create is always refused).")
@click.option("--ignore-check", is_flag=True,
              help="Write the project even when the model does not fit or fails its check on the board.")
@click.option("--force", is_flag=True, hidden=True, expose_value=False, callback=_no_force)
@json_option
def mcu(model, board, out_dir, arena_margin, arena_bytes, dry_run, update, ignore_check, as_json):
    """Generate an Arduino sketch or PlatformIO project that runs MODEL with TFLM on BOARD."""
    from edgeflow.deploy.mcu import generate_mcu_project
    from edgeflow.report import arena_name

    result = generate_mcu_project(model, board, out_dir, margin=arena_margin, arena_bytes=arena_bytes,
                                  dry_run=dry_run, update=update, ignore_check=ignore_check, log=click.echo)
    if dry_run:
        finish("deploy mcu", result.to_dict(), text="dry run: nothing was written", model=model,
               summary="dry run: nothing was written")
    text = (f"{arena_name('configured')}: {result.arena_bytes:,} bytes; {len(result.resolver_calls)} ops "
            f"registered; {result.kind} project in {result.out_dir}")
    finish("deploy mcu", result.to_dict(), text=text, model=model, outputs=[result.out_dir], summary=text)
