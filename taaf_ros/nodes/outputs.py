"""Output messages of the perception node, built from ROS-free results."""

from __future__ import annotations

from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, MultiArrayDimension

from taaf_ros.modalities import MODALITIES


def set_stamp(header: Any, t_us: int) -> None:
    """header.stamp = t_us (µs of the ROS clock)."""
    header.stamp.sec, header.stamp.nanosec = divmod(int(t_us) * 1000, 1_000_000_000)


def attention_msg(attention_map: np.ndarray) -> Float32MultiArray:
    """T x M map, row-major, with labelled dims ('time', 'modality:events,audio')."""
    T, M = attention_map.shape
    msg = Float32MultiArray()
    msg.layout.dim = [
        MultiArrayDimension(label="time", size=T, stride=T * M),
        MultiArrayDimension(label="modality:" + ",".join(MODALITIES[:M]), size=M, stride=M),
    ]
    msg.data = attention_map.astype(np.float32).ravel().tolist()
    return msg


def image_msg(rgb: np.ndarray, t_us: int, frame_id: str = "") -> Image:
    """rgb8 Image of an (H, W, 3) uint8 array."""
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    set_stamp(msg.header, t_us)
    msg.header.frame_id = frame_id
    msg.data = rgb.tobytes()  # bytes, not an ndarray: element-wise uint8[] assignment is slow
    return msg


def classification_msg(cls_type: Any, hyp_type: Any, pred: dict[str, Any], end_us: int,
                       frame_id: str = "") -> Any:
    """vision_msgs/Classification of a prediction's top-k, stamped at the window end, in the
    input's frame; no hypothesis where the node abstained (nothing recognised)."""
    msg = cls_type()
    set_stamp(msg.header, end_us)
    msg.header.frame_id = frame_id
    for item in [] if pred.get("abstained") else pred["top_k"]:
        h = hyp_type()
        h.class_id, h.score = item["label"], float(item["score"])
        msg.results.append(h)
    return msg


def label_info_msg(info_type: Any, class_type: Any, classes: list[str], stamp_us: int,
                   frame_id: str = "") -> Any:
    """vision_msgs/LabelInfo: class id -> name, for tools that show Classification."""
    msg = info_type()
    set_stamp(msg.header, stamp_us)
    msg.header.frame_id = frame_id
    for i, name in enumerate(classes):
        c = class_type()
        c.class_id, c.class_name = i, name
        msg.class_map.append(c)
    return msg


def diagnostics_msg(name: str, hardware_id: str, level: int, message: str,
                    values: list[tuple[str, str]], stamp_us: int) -> DiagnosticArray:
    """One DiagnosticStatus in a DiagnosticArray stamped at stamp_us."""
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values])
    arr = DiagnosticArray(status=[status])
    set_stamp(arr.header, stamp_us)
    return arr
