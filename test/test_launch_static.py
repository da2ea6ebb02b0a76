"""Static checks of the launch files without importing launch (not on PyPI): parsed with ast."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))


def _console_scripts() -> set[str]:
    text = (REPO / "setup.py").read_text()
    return set(re.findall(r'"(\w+)\s*=\s*[\w.]+:\w+"', text))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call: ast.Call, key: str):
    return next((k.value for k in call.keywords if k.arg == key), None)


def test_launch_files_exist():
    assert {p.name for p in LAUNCH} >= {"perception.launch.py", "demo.launch.py"}


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_executables_are_console_scripts(path):
    tree = ast.parse(path.read_text())
    common = {k.arg: k.value for c in _calls(tree, "dict") for k in c.keywords}
    for call in _calls(tree, "Node") + _calls(tree, "LifecycleNode"):
        exe = _kw(call, "executable")
        assert isinstance(exe, ast.Constant) and exe.value in _console_scripts(), exe
        package = _kw(call, "package") or common.get("package")
        assert package.value == "taaf_ros"


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_every_argument_has_a_description(path):
    tree = ast.parse(path.read_text())
    assigns = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
               for t in n.targets if isinstance(t, ast.Name)}
    args = assigns["ARGS"]
    assert isinstance(args, ast.List) and args.elts
    for item in args.elts:
        name, _, desc = item.elts
        assert isinstance(desc, ast.Constant) and len(desc.value) > 10, ast.unparse(name)
    assert _calls(tree, "DeclareLaunchArgument")
    # Every LaunchConfiguration used is declared.
    declared = {e.elts[0].value for e in args.elts}
    used = {c.args[0].value for c in _calls(tree, "cfg") + _calls(tree, "LaunchConfiguration")
            if c.args and isinstance(c.args[0], ast.Constant)}
    assert used <= declared, used - declared


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_named_files_are_installed(path):
    """Files found through FindPackageShare are installed by setup.py data_files."""
    tree = ast.parse(path.read_text())
    setup = (REPO / "setup.py").read_text()
    for call in _calls(tree, "PathJoinSubstitution"):
        parts = [e.value for e in call.args[0].elts[1:] if isinstance(e, ast.Constant)]
        folder, name = parts[0], parts[-1]
        assert f'glob("{folder}/*' in setup, folder
        assert (REPO / folder / name).is_file(), f"{folder}/{name}"
    assert path.name.endswith(".launch.py") and 'glob("launch/*.launch.py")' in setup


def test_perception_args_cover_the_brief():
    tree = ast.parse((REPO / "launch" / "perception.launch.py").read_text())
    args = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "ARGS")
    names = {e.elts[0].value for e in args.elts}
    assert {"model", "device", "config", "events_topic", "events_type", "audio_topic",
            "audio_type", "use_replay", "data_root", "split", "managed"} <= names
