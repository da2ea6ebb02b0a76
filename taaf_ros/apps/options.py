"""What every command's parser shares, so that ``--help`` reads alike and the same thing has
the same flag everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser: its name and a one-paragraph description.

    >>> parser("taaf_x", "Do x.").format_usage()
    'usage: taaf_x [-h]\\n'
    """
    return argparse.ArgumentParser(prog=prog, description=description)


def add_out_dir(ap: argparse.ArgumentParser, what: str, **kwargs: object) -> None:
    """``--out-dir FOLDER``: the folder a command writes (``what`` says what goes there)."""
    ap.add_argument("--out-dir", type=Path, metavar="FOLDER", help=what, **kwargs)


def add_output(ap: argparse.ArgumentParser, what: str, metavar: str = "PAGE",
               **kwargs: object) -> None:
    """``--output PAGE``: the one file a command writes, a Markdown page but for
    ``taaf_export``'s graph (``what`` says which)."""
    ap.add_argument("--output", type=Path, metavar=metavar, help=what, **kwargs)
