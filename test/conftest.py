"""Test-session set-up: DDS discovery stays on loopback, one ROS domain per session."""

import os
import random
from pathlib import Path

import pytest

# Set before anything imports rclpy: Fast DDS reads these when a context is created.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_root() -> Path:
    """The real data folder: TAAF_DATA_ROOT, else ../shared/data beside the repository."""
    env = os.environ.get("TAAF_DATA_ROOT")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if not (root / "fsdd" / "recordings").is_dir():
        pytest.skip(f"real data not found at {root} (set TAAF_DATA_ROOT)")
    return root


@pytest.fixture(scope="session")
def fsdd_wav(data_root: Path) -> Path:
    return data_root / "fsdd" / "recordings" / "3_jackson_7.wav"


@pytest.fixture(scope="session")
def event_bags(data_root: Path) -> Path:
    """The real event-camera bags (../shared/data/event_bags, see its README)."""
    root = data_root / "event_bags"
    if not root.is_dir():
        pytest.skip(f"no event bags at {root}")
    return root


@pytest.fixture(scope="session")
def driver_msgs() -> None:
    """The drivers' message packages (event_camera_msgs, audio_common_msgs, vision_msgs,
    dvs_msgs), built into this venv with PyPI's rosidl tools on first use, then cached there.
    Skipped only where the build tools are truly absent; under CI a failed build fails."""
    pytest.importorskip("rclpy")
    from taaf_ros.interfaces.build import InterfaceBuildError, ensure_interfaces

    try:
        ensure_interfaces(log=lambda line: print(f"[driver_msgs] {line}"))
    except InterfaceBuildError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"driver message packages cannot be built here: {exc}")
