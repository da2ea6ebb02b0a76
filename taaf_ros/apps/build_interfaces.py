"""``taaf_build_interfaces``: the drivers' message packages built with the ROS 2 build tools
from PyPI into this virtual environment (:mod:`taaf_ros.interfaces.build`).

Usage::

    taaf_build_interfaces                    # all packages, into the running venv
    taaf_build_interfaces event_camera_msgs  # one
    taaf_build_interfaces --source DIR       # another ament_cmake interface package
    taaf_build_interfaces --activate-only    # the venv's activate puts it on AMENT_PREFIX_PATH
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from taaf_ros.apps.options import parser
from taaf_ros.interfaces import PACKAGES
from taaf_ros.interfaces.build import (
    InterfaceBuildError,
    build_source,
    ensure_interfaces,
    register_in_activate,
)


def _parser() -> argparse.ArgumentParser:
    ap = parser("taaf_build_interfaces", "Build the drivers' message packages with the ROS 2 "
                "build tools from PyPI, into this virtual environment.")
    ap.add_argument("packages", nargs="*", metavar="PACKAGE",
                    help=f"packages to build (default: all of {', '.join(PACKAGES)})")
    ap.add_argument("--prefix", type=Path, default=None,
                    help="install prefix (default: this virtual environment, sys.prefix)")
    ap.add_argument("--source", type=Path, default=None, metavar="DIR",
                    help="build this ament_cmake interface package instead (e.g. "
                         "composition_interfaces for launch_ros)")
    ap.add_argument("--force", action="store_true", help="rebuild even if current")
    ap.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default: CPUs)")
    ap.add_argument("--activate-only", action="store_true",
                    help="only make this venv's bin/activate put it on AMENT_PREFIX_PATH (done "
                         "by every build into the venv too), and build nothing")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Console script ``taaf_build_interfaces``; exit status 1 when a build fails."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.activate_only:
        added = register_in_activate()
        print(f"{Path(sys.prefix) / 'bin' / 'activate'}: puts {sys.prefix} on "
              f"AMENT_PREFIX_PATH{'' if added else ' (already)'}")
        return 0
    unknown = sorted(set(args.packages) - set(PACKAGES))
    if unknown and args.source is None:
        ap.error(f"unknown package(s) {', '.join(unknown)}; choose from {', '.join(PACKAGES)}")
    try:
        if args.source is not None:
            results = [build_source(args.source, args.prefix, args.force, args.jobs)]
        else:
            results = ensure_interfaces(args.packages or PACKAGES, args.prefix, args.force,
                                        args.jobs)
    except (InterfaceBuildError, OSError) as exc:
        print(f"taaf_build_interfaces: {exc}", file=sys.stderr)
        return 1
    built = [r for r in results if r.built]
    print(f"{len(built)} built in {sum(r.seconds for r in built):.1f} s, "
          f"{len(results) - len(built)} already current: {', '.join(r.package for r in results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
