"""Build the driver message packages with the ROS 2 build tools from PyPI, into a prefix.

A pip-only install has rclpy but none of the drivers' message packages. This writes each
package of :mod:`taaf_ros.interfaces` as an ordinary ament_cmake message package (package.xml,
CMakeLists.txt, msg/) and runs CMake on it with the rosidl generators installed from PyPI (the
``interfaces`` extra), installing into the virtual environment itself: the libraries land in
``<venv>/lib`` and the Python modules in its site-packages, where rclpy and the dynamic loader
already look, so nothing needs sourcing.

A package is rebuilt only when its sources, the generator version or the Python version change
(a digest kept beside its install). A lock file serialises concurrent builds into one prefix.

The command is ``taaf_build_interfaces`` (:mod:`taaf_ros.apps.build_interfaces`).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from taaf_ros.interfaces import DEPENDENCIES, PACKAGES, SOURCES, msg_files

DIGEST_FILE = "taaf_ros_interfaces.sha256"

PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>{name}</name>
  <version>0.0.0</version>
  <description>{name} built by taaf_ros from {source}</description>
  <maintainer email="maintainers@taaf-ros.invalid">taaf_ros maintainers</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
{depends}
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

# PyPI's rosidl wheels are built in manylinux containers, and their exported CMake targets list
# that container's include folders (/opt/python/cp311-cp311/include/python3.11 and numpy's),
# which exist on no other machine; CMake refuses to generate with a missing include folder.
# Dropping the missing entries is enough: this build finds its own Python and numpy headers.
CMAKE_LISTS = """cmake_minimum_required(VERSION 3.21)
project({name})
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
{find_deps}
rosidl_generate_interfaces(${{PROJECT_NAME}}
{msgs}
  DEPENDENCIES {deps})
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""

FIX_INCLUDE_FOLDERS = """
get_directory_property(_imported IMPORTED_TARGETS)
foreach(_target IN LISTS _imported)
  get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
  if(_dirs)
    set(_kept "")
    foreach(_dir IN LISTS _dirs)
      if(EXISTS "${_dir}" OR _dir MATCHES "^\\\\$<")
        list(APPEND _kept "${_dir}")
      else()
        message(STATUS "${_target}: dropping missing include folder ${_dir}")
      endif()
    endforeach()
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
  endif()
endforeach()
"""


class InterfaceBuildError(RuntimeError):
    """A message package could not be built (a tool or a ROS CMake package is missing)."""


@dataclass(frozen=True)
class BuildResult:
    package: str
    seconds: float
    built: bool  # False: the installed build was current


def package_sources(package: str) -> dict[str, str]:
    """``{relative path: text}`` of the ament_cmake package for one interface package."""
    msgs = msg_files(package)
    deps = DEPENDENCIES[package]
    return {
        "package.xml": PACKAGE_XML.format(
            name=package, source=SOURCES[package],
            depends="\n".join(f"  <depend>{d}</depend>" for d in deps)),
        "CMakeLists.txt": CMAKE_LISTS.format(
            name=package,
            find_deps="\n".join(f"find_package({d} REQUIRED)" for d in deps),
            msgs="\n".join(f'  "msg/{m}.msg"' for m in msgs),
            deps=" ".join(deps)) + FIX_INCLUDE_FOLDERS,
        **{f"msg/{m}.msg": text for m, text in msgs.items()},
    }


def _toolchain_version() -> str:
    try:
        generator = importlib.metadata.version("ros-rosidl-generator-py")
    except importlib.metadata.PackageNotFoundError:
        generator = "?"
    return f"rosidl_generator_py {generator}; python {sys.version_info[:2]}"


def source_digest(package: str) -> str:
    """What a build of ``package`` depends on: its sources, the generator, the Python."""
    return _digest(package_sources(package))


def _digest(sources: dict[str, str]) -> str:
    h = hashlib.sha256(_toolchain_version().encode())
    for path, text in sorted(sources.items()):
        h.update(path.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def site_packages(prefix: Path) -> Path:
    """The site-packages folder of ``prefix`` (where ament_cmake_python installs)."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix),
                                                    "platbase": str(prefix)}))


def is_current(package: str, prefix: Path) -> bool:
    """True when ``prefix`` holds a build of ``package`` made from today's sources."""
    digest = prefix / "share" / package / DIGEST_FILE
    return (digest.is_file() and digest.read_text().strip() == source_digest(package)
            and (site_packages(prefix) / package / "msg" / "__init__.py").is_file())


def distro_prefix() -> str:
    """The PyPI name prefix of the installed distribution's wheels (``ros-`` or ``ros-jazzy-``)."""
    try:
        importlib.metadata.version("ros-jazzy-rclpy")
        return "ros-jazzy-"
    except importlib.metadata.PackageNotFoundError:
        return "ros-"


def _explain(log_text: str) -> str:
    missing = sorted(set(re.findall(r'provided by\s+"(\w+)"', log_text)))
    if missing:
        wheels = " ".join(distro_prefix() + m.replace("_", "-") for m in missing)
        return (f"CMake package(s) {', '.join(missing)} not found: pip install {wheels} "
                f"(or: pip install 'taaf_ros[interfaces]')")
    return "\n".join(log_text.strip().splitlines()[-25:])


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise InterfaceBuildError(f"{cmd[0]} failed (log: {log}): {_explain(log.read_text())}")


def source_tree(folder: Path) -> dict[str, str]:
    """``{relative path: text}`` of an existing ament_cmake interface package (its CMakeLists
    with the include-folder fix appended): e.g. composition_interfaces, which launch_ros needs
    and PyPI lacks."""
    files = {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.suffix in (".txt", ".xml", ".msg", ".srv", ".action")}
    if "CMakeLists.txt" not in files or "package.xml" not in files:
        raise InterfaceBuildError(f"{folder}: not an ament_cmake package (no CMakeLists.txt "
                                  "and package.xml)")
    files["CMakeLists.txt"] += FIX_INCLUDE_FOLDERS
    return files


def build_package(package: str, prefix: Path, work_dir: Path, jobs: int,
                  sources: dict[str, str] | None = None) -> float:
    """Configure, build and install one package (``sources``: default, the packaged one's)
    into ``prefix``; the seconds it took."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise InterfaceBuildError("cmake not found: install it (apt install cmake, or "
                                  "pip install cmake) to build the message packages")
    t0 = time.perf_counter()
    src, build = work_dir / package / "src", work_dir / package / "build"
    for path, text in (sources or package_sources(package)).items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    build.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_VERSION="2",  # ament's message packages check it
               PATH=f"{prefix / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               AMENT_PREFIX_PATH=str(prefix), CMAKE_PREFIX_PATH=str(prefix))
    log = work_dir / package / "build.log"
    _run([cmake, "-S", str(src), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
          f"-DCMAKE_PREFIX_PATH={prefix}", f"-DPython3_EXECUTABLE={sys.executable}",
          "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"], src, env, log)
    _run([cmake, "--build", str(build), "--parallel", str(jobs)], src, env, log)
    _run([cmake, "--install", str(build)], src, env, log)
    digest = source_digest(package) if sources is None else _digest(sources)
    (prefix / "share" / package / DIGEST_FILE).write_text(digest + "\n")
    return time.perf_counter() - t0


ACTIVATE_MARK = "# taaf_ros: this venv is an ament prefix"
ACTIVATE_LINES = (
    ACTIVATE_MARK + " (the PyPI ROS 2 wheels and the message packages built into it), so\n"
    "# `ros2 interface show`, `ros2 topic echo` and `ros2 pkg` find them (taaf_build_interfaces)\n"
    'case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export '
    'AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac\n')


def register_in_activate(venv: Path | None = None) -> bool:
    """Make ``<venv>/bin/activate`` put the venv on AMENT_PREFIX_PATH (once; True if it was
    added now). The PyPI wheels install their ament index into the venv but set nothing, so
    without it the ``ros2`` tools see none of its interfaces. Nothing outside a venv."""
    venv = Path(venv or sys.prefix)
    activate = venv / "bin" / "activate"
    if not activate.is_file() or ACTIVATE_MARK in activate.read_text():
        return False
    with open(activate, "a") as f:
        f.write("\n" + ACTIVATE_LINES)
    return True


def ensure_interfaces(packages: Iterable[str] = PACKAGES, prefix: Path | None = None,
                      force: bool = False, jobs: int | None = None,
                      log: Callable[[str], None] = print) -> list[BuildResult]:
    """Build every package of ``packages`` into ``prefix`` (default: this venv) unless current."""
    prefix = Path(prefix or sys.prefix).resolve()
    jobs = jobs or os.cpu_count() or 1
    (prefix / "share").mkdir(parents=True, exist_ok=True)
    results = []
    with open(prefix / "share" / "taaf_ros_interfaces.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building into this venv
        with tempfile.TemporaryDirectory(prefix="taaf_interfaces_") as work:
            for package in packages:
                if not force and is_current(package, prefix):
                    results.append(BuildResult(package, 0.0, built=False))
                    continue
                log(f"building {package} into {prefix} ...")
                seconds = build_package(package, prefix, Path(work), jobs)
                log(f"built {package} in {seconds:.1f} s")
                results.append(BuildResult(package, seconds, built=True))
    importlib.invalidate_caches()
    if prefix == Path(sys.prefix).resolve():
        register_in_activate(prefix)
    return results


def build_source(folder: Path, prefix: Path | None = None, force: bool = False,
                 jobs: int | None = None) -> BuildResult:
    """Build the ament_cmake interface package in ``folder`` (e.g. composition_interfaces for
    launch_ros) into ``prefix`` (default: this venv), unless its digest says it is current.
    Raises InterfaceBuildError (or OSError) naming the cause."""
    prefix = Path(prefix or sys.prefix).resolve()
    sources = source_tree(folder)
    name = re.search(r"<name>\s*(\S+?)\s*</name>", sources["package.xml"])
    if name is None:
        raise InterfaceBuildError(f"{folder}/package.xml names no package")
    package = name.group(1)
    digest = prefix / "share" / package / DIGEST_FILE
    if not force and digest.is_file() and digest.read_text().strip() == _digest(sources):
        return BuildResult(package, 0.0, built=False)
    with tempfile.TemporaryDirectory(prefix="taaf_interfaces_") as work:
        seconds = build_package(package, prefix, Path(work), jobs or os.cpu_count() or 1,
                                sources)
    return BuildResult(package, seconds, built=True)
