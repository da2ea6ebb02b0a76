"""The package's layers import downwards only: the ROS-free core never imports rclpy or the
ROS shells, and one training run never imports the multi-run studies."""

from __future__ import annotations

import ast

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "taaf_ros"
CORE = ("audio", "events", "stream", "model", "data", "inference", "training", "studies")


def imports_of(package: str) -> dict[str, set[str]]:
    """{module file: every module it imports (at any depth of the file)}."""
    found: dict[str, set[str]] = {}
    for path in (PACKAGE / package).rglob("*.py"):
        names: set[str] = set()
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the file's package
                    base = parts[:len(parts) - node.level]
                    names.add(".".join((*base, node.module) if node.module else base))
                else:
                    names.add(node.module or "")
        found[path.relative_to(REPO_ROOT).as_posix()] = names
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{f} imports {n}" for f, names in imports_of(package).items()
                  for n in names if n.startswith(forbidden))


def test_the_core_imports_no_ros_and_no_node() -> None:
    for package in CORE:
        bad = offenders(package, ("rclpy", "launch", "taaf_ros.nodes.perception",
                                  "taaf_ros.nodes.managed", "taaf_ros.nodes.replay",
                                  "taaf_ros.nodes.outputs", "taaf_ros.nodes.msg_imports"))
        assert bad == [], bad


def test_training_never_imports_the_studies() -> None:
    assert offenders("training", ("taaf_ros.studies",)) == []
    for package in ("audio", "events", "stream", "model", "data", "inference"):
        assert offenders(package, ("taaf_ros.training", "taaf_ros.studies")) == [], package


def test_the_walk_sees_the_imports_it_checks() -> None:
    studies = imports_of("studies")
    assert any("taaf_ros.training.evaluation" in n for n in studies.values())
    assert any("rclpy" in n for n in imports_of("nodes").values())


def test_commands_live_in_apps_and_the_library_never_imports_them() -> None:
    """Every console script is a module of taaf_ros/apps; no library module parses a command
    line (argparse) or defines ``main``, but the ROS 2 node executables (nodes/*_node.py)."""
    library = [p for p in PACKAGE.rglob("*.py") if "apps" not in p.relative_to(PACKAGE).parts]
    for path in library:
        tree = ast.parse(path.read_text())
        mains = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert not mains or path.name.endswith("_node.py"), path
        assert "argparse" not in {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                                  for a in n.names}, path
    for package in (*CORE, "nodes", "stream"):
        assert offenders(package, ("taaf_ros.apps",)) == [], package
    setup = (REPO_ROOT / "setup.py").read_text()
    scripts = [line.split("=", 1)[1].strip() for line in setup.splitlines()
               if " = taaf_ros." in line]
    assert len(scripts) >= 16 and all(s.startswith("taaf_ros.apps.") for s in scripts), scripts
