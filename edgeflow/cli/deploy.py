"""``edgeflow deploy rpi|coral|mcu``: put a model on a board; every command has --dry-run."""

from __future__ import annotations

import json

import click


def _ssh_options(f):
    """The SSH options shared by ``rpi`` and ``coral``."""
    options = [
        click.option("--user", help="Remote user (default: from ~/.ssh/config, else your user name)."),
        click.option("--port", type=int, help="SSH port (default: from ~/.ssh/config, else 22)."),
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
        click.option("--runs", default=50, show_default=True, help="Timed runs on the board."),
        click.option("--warmup", default=5, show_default=True, help="Untimed warm-up runs."),
        click.option("--threads", type=int, help="Interpreter threads on the board (default: the runtime's)."),
        click.option("--input", "sample", help="Input sample .npy (float samples are quantized); default random."),
        click.option("--json", "json_path", help="Write the result record to this JSON file."),
        click.option("--dry-run", is_flag=True, help="Print every step and command; run nothing."),
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


def _write_json(path, record: dict) -> None:
    from edgeflow import _io

    _io.write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    click.echo(f"wrote {path}")


@click.group()
def deploy():
    """Put a model on a board: a Raspberry Pi, a Coral Edge TPU, or a microcontroller project."""


@deploy.command()
@click.argument("model")
@click.argument("host")
@_ssh_options
def rpi(model, host, user, port, identity, known_hosts, ssh_config, accept_new_host_key, remote_python,
        remote_dir, skip_install, runs, warmup, threads, sample, json_path, dry_run):
    """Copy MODEL (.tflite) to HOST over SSH, benchmark it there and check it against the host.

    HOST is a host name, user@host or an alias from ~/.ssh/config. Host keys are always
    checked (StrictHostKeyChecking=yes, unless --accept-new-host-key).
    """
    from edgeflow.deploy.rpi import deploy_rpi

    target = _target(host, user, port, identity, known_hosts, ssh_config, accept_new_host_key)
    result = deploy_rpi(model, target, dry_run=dry_run, log=click.echo,
                        **_board_kwargs(remote_python, remote_dir, skip_install, runs, warmup, threads, sample))
    if dry_run:
        click.echo("dry run: nothing was run")
        return
    from edgeflow.deploy.rpi import summary_table

    click.echo(summary_table(result))
    if json_path:
        _write_json(json_path, result.to_dict())
    if result.correctness and not result.correctness["match"]:
        raise click.exceptions.Exit(1)


@deploy.command()
@click.argument("model")
@click.option("--host", help="A Coral Dev Board to benchmark on over SSH (host, user@host or ~/.ssh/config alias).")
@click.option("-o", "--out-dir", help="Where the compiled model goes (default: beside MODEL).")
@_ssh_options
def coral(model, host, out_dir, user, port, identity, known_hosts, ssh_config, accept_new_host_key,
          remote_python, remote_dir, skip_install, runs, warmup, threads, sample, json_path, dry_run):
    """Pre-check MODEL for the Edge TPU, compile it (if edgetpu_compiler is installed), and
    benchmark it on a Dev Board with --host."""
    from edgeflow.deploy.coral import deploy_coral, precheck_table
    from edgeflow.deploy.rpi import BoardResult, summary_table

    target = _target(host, user, port, identity, known_hosts, ssh_config, accept_new_host_key) if host else None
    kwargs = _board_kwargs(remote_python, remote_dir, skip_install, runs, warmup, threads, sample) if host else {}
    result = deploy_coral(model, out_dir=out_dir, target=target, dry_run=dry_run, log=click.echo, **kwargs)
    pc = result.precheck
    click.echo(precheck_table(pc))
    click.echo(f"Edge TPU pre-check: {'compatible' if pc['compatible'] else 'NOT fully compatible'} "
               f"({pc['ops_on_tpu']} ops on the TPU, {pc['ops_on_cpu']} on the CPU)")
    if result.board and not dry_run:
        click.echo(summary_table(BoardResult(**result.board)))
    if dry_run:
        click.echo("dry run: nothing was run")
        return
    if json_path:
        _write_json(json_path, result.to_dict())


@deploy.command()
@click.argument("model")
@click.option("--board", required=True, help="Microcontroller profile name (see 'edgeflow devices').")
@click.option("-o", "--out-dir", required=True, help="Project directory to create (replaced if it exists).")
@click.option("--arena-margin", default=0.25, show_default=True,
              help="Arena margin: a fraction of the measured arena (plus 1 KiB).")
@click.option("--arena-bytes", type=int, help="Use this measured arena instead of running check.")
@click.option("--json", "json_path", help="Write the project record to this JSON file.")
@click.option("--dry-run", is_flag=True, help="Print every step and file; measure and write nothing.")
def mcu(model, board, out_dir, arena_margin, arena_bytes, json_path, dry_run):
    """Generate an Arduino sketch or PlatformIO project that runs MODEL with TFLM on BOARD."""
    from edgeflow.deploy.mcu import generate_mcu_project

    result = generate_mcu_project(model, board, out_dir, margin=arena_margin, arena_bytes=arena_bytes,
                                  dry_run=dry_run, log=click.echo)
    if dry_run:
        click.echo("dry run: nothing was written")
        return
    click.echo(f"arena {result.arena_bytes:,} bytes; {len(result.resolver_calls)} ops registered; "
               f"{result.kind} project in {result.out_dir}")
    if json_path:
        _write_json(json_path, result.to_dict())
