"""taaf_ros: an ament_python package that also installs with plain pip."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "taaf_ros"

# One list per purpose; the distribution decides the wheels' name prefix.
ROS_RUNTIME = ["rclpy[fastrtps]", "std-msgs", "sensor-msgs", "diagnostic-msgs", "lifecycle-msgs"]
INTERFACE_TOOLS = ["ament-cmake", "ament-package", "ament-cmake-include-directories",
                   "rosidl-default-generators", "rosidl-core-generators"]
# What each distribution's generator wheels need but do not declare (found by building).
INTERFACE_TOOLS_KILTED = ["ament-cmake-ros-core"]
INTERFACE_TOOLS_JAZZY = ["ament-cmake-ros", "ament-cmake-gmock", "ament-cmake-gtest",
                         "ament-cmake-pytest", "python-cmake-module"]

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
        # DEFAULT_MODEL and its ONNX graph (taaf_export; the onnxruntime backend)
        (f"share/{PACKAGE}/models", ["models/taaf_avdigits.pt", "models/taaf_avdigits.onnx"]),
    ],
    package_data={PACKAGE: ["py.typed", "interfaces/*/msg/*.msg"]},
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
        "av>=12",  # MP3 (audio_capture's default) and other compressed audio
        "pillow>=9",  # the debug view's caption
        # The CPU's fastest backend (inference_backend auto): the graph's export and runtime.
        # Not on aarch64, where a Jetson needs NVIDIA's onnxruntime-gpu instead (a different
        # distribution name: PyPI's CPU build would shadow it; docs/model.md, "Jetson").
        "onnx>=1.16",
        "onnxscript>=0.2",
        'onnxruntime>=1.18; platform_machine != "aarch64"',
        "setuptools",
    ],
    extras_require={
        # ROS 2 from PyPI, for machines without a ROS install: Kilted (the unprefixed wheels)
        # or Jazzy (LTS). Install one of the two into a venv, never both.
        "ros": [f"ros-{p}" for p in ROS_RUNTIME],
        "ros-jazzy": [f"ros-jazzy-{p}" for p in ROS_RUNTIME],
        # The rosidl build tools that taaf_build_interfaces needs to build the driver messages.
        "interfaces": [f"ros-{p}" for p in INTERFACE_TOOLS + INTERFACE_TOOLS_KILTED]
        + ["catkin_pkg"],
        "interfaces-jazzy": [f"ros-jazzy-{p}" for p in INTERFACE_TOOLS + INTERFACE_TOOLS_JAZZY]
        + ["catkin_pkg"],
        # Kept so that `pip install 'taaf_ros[onnx]'` of older instructions still works: ONNX
        # Runtime is a normal dependency now (aarch64: install onnxruntime or NVIDIA's GPU one).
        "onnx": ["onnxruntime>=1.18"],
        # Event files beyond .npy and N-MNIST .bin: HDF5 and AEDAT4.
        "files": ["h5py>=3", "aedat>=2"],
        # Offline work: building datasets, training (tyro: its command line), reports.
        "train": ["tqdm>=4.60", "matplotlib>=3.7", "tyro>=0.9"],
        # Peers timed by the benchmarks (not needed to run or test the package).
        "bench": ["expelliarmus"],
        # faery writes the AEDAT4 files the reader is tested on (another implementation);
        # triton runs the CUDA LIF kernel's source on the CPU (TRITON_INTERPRET=1) in the tests.
        "dev": ['triton>=3.2; platform_system == "Linux" and platform_machine == "x86_64"',
                "pytest>=7", "hypothesis>=6", "ruff>=0.4", "h5py>=3", "aedat>=2", "faery>=0.7",
                "colcon-common-extensions"],
    },
    entry_points={
        "console_scripts": [
            "perception_node = taaf_ros.apps.entry_points:perception_node",
            "managed_perception_node = taaf_ros.apps.entry_points:managed_perception_node",
            "replay_node = taaf_ros.apps.entry_points:replay_node",
            "taaf_bag_play = taaf_ros.apps.entry_points:bag_play",
            "taaf_demo = taaf_ros.apps.entry_points:demo",
            "taaf_build_avdigits = taaf_ros.apps.build_avdigits:main",
            "taaf_dataset = taaf_ros.apps.dataset:main",
            "taaf_stream_select = taaf_ros.apps.stream_select:main",
            "taaf_stream_eval = taaf_ros.apps.stream_eval:main",
            "taaf_train = taaf_ros.apps.train:main",
            "taaf_robustness = taaf_ros.apps.robustness:main",
            "taaf_loso = taaf_ros.apps.loso:main",
            "taaf_optim_select = taaf_ros.apps.optim_select:main",
            "taaf_fusion_study = taaf_ros.apps.fusion_study:main",
            "taaf_build_interfaces = taaf_ros.apps.build_interfaces:main",
            "taaf_export = taaf_ros.apps.export:main",
        ],
    },
)
