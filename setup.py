"""taaf_ros: an ament_python package that also installs with plain pip."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "taaf_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Audio-visual recognition with a TAAF spiking neural network on ROS 2",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", ["models/taaf_avdigits.pt"]),  # DEFAULT_MODEL
    ],
    package_data={PACKAGE: ["py.typed"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        # Pin torch first (constraints.txt): an unpinned torch pulls a multi-GB CUDA build.
        "torch>=2.1",
        "norse==1.1.0",
        "tonic==1.7.0",
        "numba>=0.58",
        "pyyaml>=6",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "setuptools",
    ],
    extras_require={
        # ROS 2 Kilted builds from PyPI, for machines without a ROS install.
        "ros": [
            "ros-rclpy[fastrtps]",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-diagnostic-msgs",
        ],
        # Peers timed by the benchmarks (not needed to run or test the package).
        "bench": ["expelliarmus"],
        "dev": ["pytest>=7", "hypothesis>=6", "ruff>=0.4", "h5py>=3", "colcon-common-extensions"],
    },
    entry_points={
        "console_scripts": [
            "perception_node = taaf_ros.nodes.perception_node:main",
            "replay_node = taaf_ros.nodes.replay_node:main",
            "taaf_bag_play = taaf_ros.nodes.bag_play:main",
            "taaf_demo = taaf_ros.nodes.demo:main",
            "taaf_build_avdigits = taaf_ros.data.avdigits:main",
            "taaf_train = taaf_ros.training.cli:main",
        ],
    },
)
