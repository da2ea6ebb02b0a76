"""The package installs both ways: a colcon (ament_python) build and pip's entry points."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO_ROOT


def _console_scripts() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="console_scripts")
            if ep.value.startswith("taaf_ros.")}


def test_package_xml_is_format_3_with_ament_python():
    root = ET.parse(REPO_ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "taaf_ros"
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "std_msgs", "sensor_msgs", "diagnostic_msgs"} <= exec_deps


# ROS packages a stock ROS 2 install has though PyPI does not (launch is pure Python, not on PyPI)
STOCK_NOT_ON_PYPI = {"launch", "launch_ros", "launch_testing", "launch_testing_ros"}
SYSTEM_KEYS = {"python3-numpy", "python3-scipy", "python3-yaml", "python3-pytest", "python3-pil"}


def test_package_xml_declares_only_keys_rosdep_resolves():
    """Every dependency is a ROS package of the stock install (the ones on PyPI found in this
    venv's ament index, so installed here) or a rosdep system key; the optional driver messages
    and the training-only libraries are not dependencies."""
    from taaf_ros.interfaces import PACKAGES

    root = ET.parse(REPO_ROOT / "package.xml").getroot()
    keys = {e.text for tag in ("depend", "exec_depend", "build_depend", "test_depend")
            for e in root.findall(tag)}
    assert not keys & set(PACKAGES), "optional message packages must stay optional"
    assert not keys & {"python3-tqdm", "python3-matplotlib", "python3-torch", "python3-numba"}
    index = Path(sys.prefix) / "share" / "ament_index" / "resource_index" / "packages"
    for key in keys - SYSTEM_KEYS - STOCK_NOT_ON_PYPI:
        assert (index / key).is_file(), key


def test_console_scripts_import():
    scripts = _console_scripts()
    assert {"perception_node", "managed_perception_node", "replay_node", "taaf_demo",
            "taaf_train", "taaf_build_avdigits", "taaf_build_interfaces"} <= set(scripts)
    import importlib

    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def _colcon() -> str | None:
    """colcon beside this interpreter (the venv's bin/ need not be on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "colcon"
    return str(beside) if beside.is_file() else shutil.which("colcon")


@pytest.mark.slow
@pytest.mark.skipif(_colcon() is None, reason="colcon is not installed")
def test_colcon_build_installs_scripts_and_data(tmp_path: Path):
    ws = tmp_path / "ws"
    src = ws / "src" / "taaf_ros"
    shutil.copytree(REPO_ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "install", "log", "runs", "*.egg-info", "__pycache__"))
    env = dict(os.environ)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    proc = subprocess.run([_colcon(), "build", "--base-paths", "src"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lib = ws / "install" / "taaf_ros" / "lib" / "taaf_ros"
    share = ws / "install" / "taaf_ros" / "share" / "taaf_ros"
    assert {p.name for p in lib.iterdir()} >= {"perception_node", "replay_node", "taaf_demo"}
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "perception.launch.py").is_file()
    assert (share / "config" / "perception.yaml").is_file()
    assert any((share / "models").glob("*.pt"))
    marker = ws / "install" / "taaf_ros" / "share" / "ament_index" / "resource_index"
    assert (marker / "packages" / "taaf_ros").is_file()
