"""Where the bundled model lives, installed or in a source checkout."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

DEFAULT_MODEL = "taaf_avdigits.pt"
"""The bundled checkpoint's file name (installed to share/taaf_ros/models by setup.py)."""


def find_bundled_model(share_dirs: Iterable[str | os.PathLike[str]] | None = None) -> Path:
    """The default checkpoint: ``share/taaf_ros/models/taaf_avdigits.pt`` (:data:`DEFAULT_MODEL`),
    else the source tree's models/. Only that file name: another ``*.pt`` put beside it is
    never picked by accident (name it in ``model_path``).

    Looked up in order: the ament index (``AMENT_PREFIX_PATH``, a ROS workspace or install),
    ``<sys.prefix>/share/taaf_ros/models`` (a plain ``pip install`` puts data_files there and
    sets no AMENT_PREFIX_PATH), then ``models/`` beside the package (an editable install or a
    source checkout). Raises FileNotFoundError naming every place searched.
    """
    dirs: list[Path] = []
    if share_dirs is None:
        try:
            from ament_index_python.packages import get_package_share_directory

            dirs.append(Path(get_package_share_directory("taaf_ros")) / "models")
        except (ImportError, LookupError, OSError, ValueError):
            pass  # no ament index (AMENT_PREFIX_PATH unset) or package not registered
        dirs.append(Path(sys.prefix) / "share" / "taaf_ros" / "models")
        dirs.append(Path(__file__).resolve().parents[2] / "models")
    else:
        dirs = [Path(d) for d in share_dirs]
    for d in dirs:
        if (d / DEFAULT_MODEL).is_file():
            return d / DEFAULT_MODEL
    raise FileNotFoundError(f"no bundled model ({DEFAULT_MODEL}) in " + ", ".join(map(str, dirs))
                            + "; set model_path to a checkpoint")
