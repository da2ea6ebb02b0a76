"""Where the replay node puts each dataset sample on the ROS clock, and in which order."""

from __future__ import annotations

from collections.abc import Sequence

from taaf_ros.stream.clock import grid_ceil


class ReplayPlan:
    """Where each replayed sample sits on the ROS clock (the alignment policy).

    Every sample gets a slot of ``slot_us = ceil((window + gap) / hop) * hop``: its first
    ``window`` of events and audio, then silence (audio zeros, empty event packets). Slots start
    on multiples of ``hop`` of the ROS clock, which is also the perception node's window grid,
    so the window ending at ``slot_start + window`` covers exactly one sample (the window offline
    evaluation classifies) and is matched to it by :func:`taaf_ros.inference.scoring.best_match`;
    sliding windows in between are matched to the sample covering most of them. Packets (events)
    and chunks (audio) of ``packet_us`` tile the timeline from the first slot; packet_us is
    shrunk to divide hop so that no packet straddles two slots.
    """

    def __init__(self, window_us: int, hop_us: int, gap_us: int, packet_us: int,
                 first_start_us: int) -> None:
        self.window_us, self.hop_us = int(window_us), int(hop_us)
        self.slot_us = grid_ceil(self.window_us + int(gap_us), self.hop_us)
        self.packet_us = self.hop_us // max(1, -(-self.hop_us // int(packet_us)))
        self.origin_us = grid_ceil(first_start_us, self.hop_us)

    def slot_start(self, slot: int) -> int:
        return self.origin_us + slot * self.slot_us

    def packet(self, k: int) -> tuple[int, int, int]:
        """(slot index, start µs, end µs) of packet k."""
        a = self.origin_us + k * self.packet_us
        return (a - self.origin_us) // self.slot_us, a, a + self.packet_us

    def sample_range(self, a_us: int, b_us: int, rate: int) -> tuple[int, int]:
        """Global audio sample indices [i0, i1) for [a_us, b_us): contiguous across packets."""
        return ((a_us - self.origin_us) * rate // 1_000_000,
                (b_us - self.origin_us) * rate // 1_000_000)


REPLAY_ORDERS = ("interleaved", "listed")


def replay_order(labels: Sequence[int], order: str = "interleaved") -> list[int]:
    """Dataset indices in replay order.

    ``listed``: the dataset's order (class by class). ``interleaved``: round robin over the
    classes (first sample of each class in class order, then the second, ...), so that the
    first N samples of a replay are as class-balanced as N allows.

    >>> replay_order([0, 0, 0, 1, 1, 2])
    [0, 3, 5, 1, 4, 2]
    """
    if order == "listed":
        return list(range(len(labels)))
    if order != "interleaved":
        raise ValueError(f"order must be one of {REPLAY_ORDERS}, got {order!r}")
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(int(c), []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    out: list[int] = []
    for k in range(max((len(q) for q in queues), default=0)):
        out += [q[k] for q in queues if k < len(q)]
    return out
