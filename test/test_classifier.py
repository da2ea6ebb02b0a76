"""Tests of the bundled model lookup (the part of the classifier that needs no checkpoint)."""

from __future__ import annotations

import pytest

from taaf_ros.nodes.classifier import find_bundled_model


def test_find_bundled_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no bundled model"):
        find_bundled_model([tmp_path / "a"])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "m.pt").write_bytes(b"x")
    assert find_bundled_model([tmp_path / "a", tmp_path / "b"]).name == "m.pt"
