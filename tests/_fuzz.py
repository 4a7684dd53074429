"""A seeded mutator of valid ``.tflite`` files, for the fuzz test and ``bench/bench_fuzz.py``.

Each mutant is one of: bit flips, byte changes, a truncation, or a corrupted 32-bit word
at a 4-aligned position (flatbuffers keep offsets, vtable entries and vector lengths
there): set to 0, to a value past the end of the file, to the largest int32/uint32, or
shifted by a little. The same ``(data, seed)`` always gives the same mutants.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

KINDS = ("bitflip", "bytes", "truncate", "word")


def mutate(data: bytes, rng: random.Random, kind: str | None = None) -> tuple[str, bytes]:
    """One mutant of ``data``: ``(description, bytes)``."""
    kind = kind or rng.choice(KINDS)
    buf = bytearray(data)
    n = len(buf)
    if kind == "bitflip":
        spots = [rng.randrange(8, n) for _ in range(rng.randint(1, 8))]
        for pos in spots:
            buf[pos] ^= 1 << rng.randrange(8)
        return f"bitflip@{','.join(map(str, spots))}", bytes(buf)
    if kind == "bytes":
        spots = [rng.randrange(8, n) for _ in range(rng.randint(1, 4))]
        for pos in spots:
            buf[pos] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        return f"bytes@{','.join(map(str, spots))}", bytes(buf)
    if kind == "truncate":
        cut = rng.randrange(8, n)
        return f"truncate@{cut}", bytes(buf[:cut])
    pos = rng.randrange(8, n - 4) & ~3
    (old,) = struct.unpack_from("<I", buf, pos)
    new = rng.choice((0, 1, n, n + rng.randrange(1, 1 << 16), 0x7FFFFFFF, 0xFFFFFFFF,
                      (old + rng.randint(-8, 8)) & 0xFFFFFFFF, (old * 1000 + 1) & 0xFFFFFFFF))
    struct.pack_into("<I", buf, pos, new)
    return f"word@{pos}:{old}->{new}", bytes(buf)


def mutants(seeds: dict[str, bytes], count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` mutants of the valid models in ``seeds`` ({name: bytes}), round robin:
    ``("name:description", bytes)``."""
    rng = random.Random(seed)
    names = sorted(seeds)
    for i in range(count):
        name = names[i % len(names)]
        what, data = mutate(seeds[name], rng)
        yield f"{name}:{what}", data


# --------------------------------------------------------------------------- the harness

OUTCOMES = ("clean_error", "accepted", "unhandled", "invalid_json", "fits_refused", "crash", "over_10s")


def classify(data: bytes, folder, *, run_check: bool = True) -> tuple[str, str]:
    """Run one mutant through the reader, ``inspect --json`` and (``run_check``) ``check
    --json`` (every board, ``--no-measure``), in this process; ``(outcome, detail)``.

    ``clean_error``: the reader refuses it and both commands exit 2 with a valid document;
    ``accepted``: the reader takes it, inspect exits 0, check 0 or 1, documents valid;
    ``unhandled``: an exception escaped, or a command exited 3; ``invalid_json``: a
    document is not valid against the schema; ``fits_refused``: check says a board fits
    although LiteRT refuses or crashes on the model.
    """
    import json
    from pathlib import Path

    import jsonschema
    from click.testing import CliRunner

    from edgeflow.cli import main
    from edgeflow.cli._output import schema
    from edgeflow.errors import EdgeflowError
    from edgeflow.runtime import litert
    from edgeflow.tflite import parse

    path = Path(folder) / "mutant.tflite"
    path.write_bytes(data)
    try:
        parse(data)
        accepted = True
    except EdgeflowError:
        accepted = False
    except Exception as err:  # noqa: BLE001 - the point is to find these
        return "unhandled", f"reader: {type(err).__name__}: {err}"[:300]
    validator = jsonschema.Draft202012Validator(schema())
    docs = {}
    commands = [("inspect", ["inspect", str(path), "--json"])]
    if run_check:
        commands.append(("check", ["check", str(path), "-d", "all", "--no-measure", "--json"]))
    for name, args in commands:
        result = CliRunner().invoke(main, args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            return "unhandled", f"{name}: {type(result.exception).__name__}: {result.exception}"[:300]
        if result.exit_code == 3:
            return "unhandled", f"{name}: {result.stderr.strip()}"[:300]
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            return "invalid_json", f"{name}: {result.stdout[:200]!r}"
        errors = list(validator.iter_errors(doc))
        if errors:
            return "invalid_json", f"{name}: {errors[0].message}"[:300]
        expected = (2,) if not accepted else (0,) if name == "inspect" else (0, 1)
        if result.exit_code not in expected:
            return "unhandled", f"{name}: exit {result.exit_code} ({result.stderr.strip()[:200]})"
        docs[name] = doc
    if not accepted:
        return "clean_error", docs["inspect"]["error"]["message"][:200]
    if not run_check:
        return "accepted", "not checked"
    if not any(d["fits"] for d in docs["check"]["devices"]):
        return "accepted", "fits no board"
    loads = litert.probe(data)  # cached: check probed these bytes already
    if not loads.ok:
        return "fits_refused", loads.message[:200]
    return "accepted", "fits a board"


def worker(seed_dir: str, start: int, stop: int, seed: int, log: str, check_every: int = 1) -> None:
    """Classify mutants ``start..stop-1``, one JSON line per mutant; a ``begin`` line first, so
    that the parent can name the mutant that killed this process."""
    import json
    import os
    import tempfile
    import time
    from pathlib import Path

    seeds = {p.stem: p.read_bytes() for p in sorted(Path(seed_dir).glob("*.tflite"))}
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with tempfile.TemporaryDirectory(prefix="edgeflow-fuzz-") as folder:
        for i, (what, data) in enumerate(mutants(seeds, stop, seed)):
            if i < start:
                continue
            os.write(fd, (json.dumps({"begin": i, "what": what}) + "\n").encode())
            t0, c0 = time.monotonic(), _cpu()
            outcome, detail = classify(data, folder, run_check=i % check_every == 0)
            seconds, cpu = time.monotonic() - t0, _cpu() - c0
            if cpu > 10:  # CPU time (this process and its children): on a busy machine wall time waits
                outcome, detail = "over_10s", f"{cpu:.1f} s of CPU ({outcome})"
            os.write(fd, (json.dumps({"end": i, "what": what, "outcome": outcome, "detail": detail,
                                      "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)})
                          + "\n").encode())
    os.close(fd)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(seed_dir, count: int, seed: int, log, check_every: int = 1) -> dict[int, dict]:
    """Classify ``count`` mutants in worker processes; a worker that dies is a ``crash`` of
    the mutant it was on, and a new worker goes on with the next. ``check`` runs on every
    ``check_every``-th mutant (it starts a LiteRT child: about 0.5 s). ``{index: record}``."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    log = Path(log)
    log.unlink(missing_ok=True)
    records: dict[int, dict] = {}
    start = 0
    while start < count:
        proc = subprocess.run([sys.executable, __file__, str(seed_dir), str(start), str(count), str(seed),
                               str(log), str(check_every)], stdin=subprocess.DEVNULL, capture_output=True, check=False)
        begun = None
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if "end" in entry:
                records[entry["end"]] = entry
            else:
                begun = entry
        if proc.returncode == 0:
            break
        if begun is None or begun["begin"] in records:  # died outside a mutant: a bug of the harness
            raise RuntimeError(f"fuzz worker failed (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}")
        records[begun["begin"]] = {"end": begun["begin"], "what": begun["what"], "outcome": "crash",
                                   "detail": f"worker exit {proc.returncode}", "seconds": 0.0}
        start = begun["begin"] + 1
    return records


if __name__ == "__main__":
    import sys

    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
