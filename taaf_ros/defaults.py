"""Defaults that several stages share, each written once. Light on purpose (no numpy): the
parameter table and the launch files import it.

The model's window and the live hop decide what the network sees; the ROS parameters, the
front end, the replay node and the evaluations read them from here.
"""

import os
from pathlib import Path

WINDOW_S = 0.6
"""Window length (s): holds 90 % of FSDD's spoken digits whole and an N-MNIST-style saccade."""

HOP_S = 0.05
"""Live hop (s): a window ends every 50 ms (20 decisions a second)."""

FSDD_RATE_HZ = 8000
"""FSDD's sample rate, so AV-digits' audio rate and the model's cochlea rate by default."""

STREAM_AUDIO_RATE_HZ = 16000
"""The audio rate assumed where neither the message nor the recording says (std_msgs
MultiArrays, AudioDataStamped recorded without its AudioInfo): audio_capture's default."""

INFERENCE_BACKENDS = ("eager", "onnxruntime", "cuda_graph")
"""How the network runs: PyTorch op by op; the exported graph in ONNX Runtime; the PyTorch
network captured once as a CUDA graph and replayed (CUDA only)."""

INFERENCE_CHOICES = ("auto", *INFERENCE_BACKENDS)
"""What the ``inference_backend`` parameter accepts: ``auto`` picks one of the backends."""

FEW_GROUPS = 3
"""With fewer training groups than this (a user's own recordings), validation holds out a
time block of each recording instead of a whole group: holding out one of two recordings
would leave half the data untrained (training/run_data.py; taaf_dataset reports it)."""

BLOCK_SHARE = 0.2
"""The share of each recording's training windows that its validation time block holds."""


def user_cache_dir() -> Path:
    """Where the package keeps what it makes once and reuses (AV-digits built from sources,
    training features, exported graphs): $XDG_CACHE_HOME/taaf_ros, else ~/.cache/taaf_ros."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taaf_ros"
