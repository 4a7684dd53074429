"""Device profiles: every shipped profile loads, user profiles are validated with clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgeflow.cli import main
from edgeflow.devices import (
    Device,
    get_device,
    load_devices,
    load_op_lists,
    op_list,
)
from edgeflow.devices.profiles import _shipped_dir
from edgeflow.errors import EdgeflowError

REQUIRED = {
    "arduino-nano-33-ble", "stm32f746g-disco", "nucleo-h743zi", "esp32-s3-devkitc-1",
    "raspberry-pi-pico", "arduino-portenta-h7", "sparkfun-edge", "raspberry-pi-4",
    "raspberry-pi-5", "coral-usb-accelerator", "coral-dev-board",
}
SHIPPED = sorted(load_devices())
REPO = Path(__file__).resolve().parents[1]


def test_the_required_boards_ship():
    assert REQUIRED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_profile_is_complete(name):
    dev = get_device(name)
    assert isinstance(dev, Device) and dev.name == name
    assert Path(dev.path).name == f"{name}.yaml"  # one file per board, named after it
    assert dev.sources and all(s.url.startswith("https://") for s in dev.sources)
    ops = op_list(dev)
    assert len(ops.entries) > 0
    if dev.runtime == "tflm":
        assert dev.pointer_bytes == 4 and dev.ram_bytes and dev.flash_bytes
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(ops.entries)
        assert dev.ram_bytes < 2 * 1024 * 1024  # on-chip SRAM of an MCU
    if dev.runtime == "edgetpu":
        assert "float32" not in dev.dtypes
    for part in (dev.overhead.runtime, dev.overhead.application):
        assert part.basis.strip()


def test_every_op_list_is_non_empty_and_named_by_some_profile():
    lists = load_op_lists()
    assert set(lists) == {"tflm", "litert", "edgetpu"}
    named = {get_device(n).ops for n in SHIPPED}
    assert named == set(lists)
    for op_set in lists.values():
        assert len(op_set.entries) >= 30
        assert op_set.sources
    # LiteRT on a Pi has every TFLM kernel; the Edge TPU has far fewer ops than either
    assert set(lists["tflm"].entries) <= set(lists["litert"].entries)
    assert len(lists["edgetpu"].entries) < len(lists["tflm"].entries)


def test_profiles_ship_inside_the_package_for_non_editable_installs(tmp_path):
    """The profiles are package data (found after `pip install .`), not only in the repo."""
    assert _shipped_dir().is_relative_to(REPO / "edgeflow")
    assert (REPO / "devices").resolve() == _shipped_dir().resolve()
    src = tmp_path / "src"  # build from a copy: nothing is written into the repository
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "edgeflow", src / "edgeflow",
                    ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("edgeflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [*SHIPPED, "_ops"]:
        assert f"edgeflow/_data/devices/{name}.yaml" in names
    # the recipes and deployment templates ship the same way
    assert "edgeflow/_data/recipes/quickstart.yaml" in names
    assert any(n.startswith("edgeflow/_data/templates/") for n in names)
    assert "edgeflow/schema/output.schema.json" in names  # the --json schema (cli._output.schema)


def test_unknown_device_suggests_the_closest_name():
    with pytest.raises(EdgeflowError, match=r"did you mean 'raspberry-pi-pico'\?"):
        get_device("raspbery-pi-pico")


def _profile(tmp_path: Path, name: str, **changes) -> Path:
    raw = yaml.safe_load((_shipped_dir() / "arduino-nano-33-ble.yaml").read_text())
    raw["name"] = name
    for key, value in changes.items():
        target = raw
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_user_directory_adds_and_overrides_profiles_and_op_lists(tmp_path):
    _profile(tmp_path, "my-board", ram_bytes=131072, ops="tiny")
    _profile(tmp_path, "raspberry-pi-pico", ram_bytes=4096)  # replaces the shipped one
    (tmp_path / "_ops.yaml").write_text(yaml.safe_dump({
        "tiny": {"description": "two ops", "sources": [{"url": "https://example.org",
                                                        "backs": "test"}],
                 "ops": ["FULLY_CONNECTED", {"op": "SOFTMAX", "max_version": 2}]},
    }))
    devices = load_devices(tmp_path)
    assert devices["my-board"].ram_bytes == 131072
    assert devices["raspberry-pi-pico"].ram_bytes == 4096
    assert load_devices()["raspberry-pi-pico"].ram_bytes != 4096  # shipped list unchanged
    assert op_list(devices["my-board"], tmp_path).entries["SOFTMAX"].max_version == 2
    # a single file works too, and by path
    one = _profile(tmp_path / "one", "solo-board")
    assert get_device(str(one)).name == "solo-board"
    assert "solo-board" in load_devices(one)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ram_byte": 1, "ram_bytes": None}, r"key 'ram_byte': unknown key \(did you mean 'ram_bytes'\?\)"),
        ({"runtime": "tflite"}, r"key 'runtime': Input should be 'tflm', 'litert' or 'edgetpu'"),
        ({"overhead.runtime.flash_bytes": "lots"}, r"key 'overhead\.runtime\.flash_bytes'"),
        ({"sources": []}, r"key 'sources'"),
        ({"clock_mhz": None}, r"key 'clock_mhz': required key is missing"),
        ({"dtypes": ["int7"]}, r"key 'dtypes'.*unknown dtype 'int7'"),
        ({"ops": "tflm-cmsis"}, r"key 'ops': unknown operator list 'tflm-cmsis' \(did you mean 'tflm'\?\)"),
    ],
)
def test_invalid_user_profile_names_the_file_and_the_key(tmp_path, changes, expected):
    path = _profile(tmp_path, "bad-board", **changes)
    with pytest.raises(EdgeflowError, match=expected) as err:
        load_devices(tmp_path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message


def test_broken_yaml_and_missing_paths(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\n  ram_bytes: [\n")
    with pytest.raises(EdgeflowError, match=r"broken\.yaml: line 2 is not valid YAML"):
        load_devices(bad)
    with pytest.raises(EdgeflowError, match="does not exist"):
        load_devices(tmp_path / "nowhere")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(EdgeflowError, match="must be a YAML mapping"):
        load_devices(tmp_path / "list.yaml")


def test_cli_devices_table_and_json(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["devices"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["device", "SoC", "clock"]
    assert [line.split()[0] for line in lines[2:]] == SHIPPED
    result = runner.invoke(main, ["devices", "--json"])
    data = json.loads(result.stdout)["result"]["profiles"]
    assert [d["name"] for d in data] == SHIPPED and all(d["sources"] for d in data)
    shutil.copy(_shipped_dir() / "sparkfun-edge.yaml", tmp_path / "edge2.yaml")
    (tmp_path / "edge2.yaml").write_text(
        (tmp_path / "edge2.yaml").read_text().replace("name: sparkfun-edge", "name: edge-2")
        .replace("clock_mhz: 48", "clock_mhz: fast")
    )
    result = runner.invoke(main, ["devices", "--devices-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "edge2.yaml: key 'clock_mhz'" in result.output
    assert "Traceback" not in result.output


def test_an_edited_user_profile_is_read_again(tmp_path):
    path = _profile(tmp_path, "edited-board", ram_bytes=1000)
    assert load_devices(tmp_path)["edited-board"].ram_bytes == 1000
    _profile(tmp_path, "edited-board", ram_bytes=2000)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_devices(tmp_path)["edited-board"].ram_bytes == 2000
