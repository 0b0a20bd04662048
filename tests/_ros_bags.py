"""ROS 2 bags (MCAP with CDR messages) written with ``mcap-ros2-support``, for the import tests."""

from __future__ import annotations

from pathlib import Path

TWIST = """geometry_msgs/Vector3 linear
geometry_msgs/Vector3 angular
================================================================================
MSG: geometry_msgs/Vector3
float64 x
float64 y
float64 z
"""


def write_rosbag2_style(path: Path) -> None:
    """As rosbag2's MCAP plugin writes: every message's sequence is 0. Also a topic whose name
    maps to the same channel as another's (``/robot/imu`` and ``robot/imu``)."""
    from mcap_ros2.writer import Writer

    with path.open("wb") as f:
        w = Writer(f)
        twist = w.register_msgdef("geometry_msgs/msg/Twist", TWIST)
        for i in range(6):
            t = 1_700_000_000_000_000_000 + i * 10_000_000
            msg = {
                "linear": {"x": float(i), "y": 0.0, "z": 0.0},
                "angular": {"x": 0.0, "y": 0.0, "z": 0.0},
            }
            w.write_message("/robot/imu", twist, msg, log_time=t, publish_time=t, sequence=0)
            if i < 2:
                w.write_message("robot/imu", twist, msg, log_time=t + 1, publish_time=t, sequence=0)
        w.finish()
