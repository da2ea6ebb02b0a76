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


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's user cache (exported graphs, training features, AV-digits built from
    sources) in a folder of this session's own, for the processes the tests start too: no
    test passes on what an earlier session left in ~/.cache."""
    path = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(path)
    return path / "taaf_ros"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if not (root / "fsdd" / "recordings").is_dir():
        pytest.skip(f"real data not found at {root} (set TAAF_DATA_ROOT)")
    return root


@pytest.fixture(scope="session")
def avdigits_two_per_class(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AV-digits built from the real data, two samples of each class and split."""
    from taaf_ros.data.avdigits import ensure_ead_dataset

    return ensure_ead_dataset(data_root, tmp_path_factory.mktemp("avdigits"),
                              limit_per_class=2, progress=False)


@pytest.fixture(scope="session")
def real_test_windows(avdigits_two_per_class: Path):
    """(events, audio) of 20 real AV-digits test samples through the bundled model's front end,
    as (T, 20, ...) float tensors: the windows a network is checked on."""
    import numpy as np
    import torch

    from taaf_ros.data.readers import EadDataset
    from taaf_ros.frontend import FrontEndConfig, sample_tensors
    from taaf_ros.model import load_checkpoint

    ds = EadDataset(avdigits_two_per_class, "test")
    card = load_checkpoint(REPO_ROOT / "models" / "taaf_avdigits.pt").card
    fe = FrontEndConfig.from_dict(card["frontend"])
    pairs = [sample_tensors(s.events, ds.sensor_size, s.pcm, s.sample_rate, fe)
             for s in (ds[i] for i in range(len(ds)))]
    ev = torch.from_numpy(np.stack([p[0] for p in pairs], axis=1)).float()
    au = torch.from_numpy(np.stack([p[1] for p in pairs], axis=1)).float()
    return ev, au


@pytest.fixture(scope="session")
def avdigits(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AV-digits built from the real data, one sample of each class and split: built once a
    session for every test that needs a few real samples."""
    from taaf_ros.data.avdigits import ensure_ead_dataset

    return ensure_ead_dataset(data_root, tmp_path_factory.mktemp("avdigits"),
                              limit_per_class=1, progress=False)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised model with a complete model card (no trained model needed)."""
    import torch

    from taaf_ros.frontend import FrontEndConfig
    from taaf_ros.model import ModelConfig, TAAFNet, make_model_card, save_checkpoint

    torch.manual_seed(0)
    model = TAAFNet(ModelConfig()).eval()
    fe = FrontEndConfig()
    card = make_model_card(model, classes=[str(i) for i in range(10)], window_s=fe.window_s,
                           audio_rate=8000, frontend=fe.to_dict())
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "fresh.pt", model, card)


@pytest.fixture(scope="module")
def context():
    """One rclpy context for a module's nodes (its DDS participant on loopback)."""
    rclpy = pytest.importorskip("rclpy")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


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


VENDOR = REPO_ROOT.parent / "shared" / "vendor" / "ros2-python-tools"


@pytest.fixture(scope="session")
def ros2_install(tmp_path_factory: pytest.TempPathFactory, driver_msgs):
    """The real ``ros2`` command and launch system (``make ros2-tools`` installs them from
    ../shared/vendor) over this checkout laid out as ``colcon build --symlink-install`` lays
    out a package: the ament index entry, share/taaf_ros (launch, config, models) and
    lib/taaf_ros (the nodes' executables), so ``ros2 launch taaf_ros ...`` finds it.

    Returns the environment to run ``ros2`` with. Skipped where the tools are truly absent;
    under CI with the vendor folder present, their absence fails.
    """
    import importlib.util
    import shutil
    import sys

    bin_dir = Path(sys.prefix) / "bin"
    missing = [m for m in ("launch", "launch_ros", "ros2cli", "composition_interfaces")
               if importlib.util.find_spec(m) is None]
    if missing or not (bin_dir / "ros2").exists():
        reason = (f"the real ROS 2 launch tools are not installed ({', '.join(missing) or 'ros2'}"
                  f" missing): run `make ros2-tools` (needs {VENDOR})")
        if os.environ.get("CI") and VENDOR.is_dir():
            pytest.fail(reason)
        pytest.skip(reason)
    prefix = tmp_path_factory.mktemp("install")
    share = prefix / "share" / "taaf_ros"
    share.mkdir(parents=True)
    (share / "package.xml").symlink_to(REPO_ROOT / "package.xml")
    for folder in ("launch", "config", "models"):  # files linked, as --symlink-install does
        (share / folder).mkdir()
        for f in (REPO_ROOT / folder).iterdir():
            (share / folder / f.name).symlink_to(f)
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "taaf_ros").write_text("")
    lib = prefix / "lib" / "taaf_ros"
    lib.mkdir(parents=True)
    for exe in ("perception_node", "managed_perception_node", "replay_node"):
        (lib / exe).symlink_to(shutil.which(exe, path=str(bin_dir)))
    # What `source .venv/bin/activate` gives (it puts the venv on AMENT_PREFIX_PATH: the PyPI
    # wheels' and the built message packages' index), then the workspace, as
    # `source install/setup.bash` adds it.
    env = activated_env(Path(sys.prefix))
    assert str(Path(sys.prefix)) in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep), \
        "the venv's activate script does not put it on AMENT_PREFIX_PATH"
    env |= dict(AMENT_PREFIX_PATH=f"{prefix}{os.pathsep}{env['AMENT_PREFIX_PATH']}",
                PYTHONUNBUFFERED="1", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return env


def activated_env(venv: Path) -> dict[str, str]:
    """This process's environment as ``source <venv>/bin/activate`` in bash leaves it."""
    import subprocess

    out = subprocess.run(["bash", "-c", 'source "$1/bin/activate" && env -0', "_", str(venv)],
                         capture_output=True, check=True, env=dict(os.environ)).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
