"""Planner: picks the target blob and turns it into a heading and a distance.

Inputs ``bboxes`` (from the detector) and ``imu``. The target is the best red blob (the
robot chases red), else the best blob of any colour; "best" is the largest score-weighted
area. Heading comes from a pinhole model (focal length 500 px) corrected by the yaw rate
times one frame period; distance assumes blobs are 0.3 m across.

The yaw rate is taken from the IMU sample stamped 10 ms before the camera frame (by sample
index, not by arrival), as a real fusion node aligns sensors on their timestamps: whether an
IMU sample arrives just before or just after the detector's boxes then changes nothing, so
the output depends only on the inputs' contents and a replay reproduces it exactly. Output ``target``: a
float64 array ``[heading_rad, distance_m]`` (``[0, 0]`` when nothing is seen), metadata
``label`` (``"none"`` when nothing is seen) and ``frame``. The output depends only on the
inputs and their order.
"""

import math

import pyarrow as pa

from dora import Node

FOCAL_PX = 500.0
IMAGE_CX = 320.0
BLOB_SIZE_M = 0.3
FRAME_PERIOD_S = 1 / 30
PREFERRED = "red"
CAMERA_HZ = 30
IMU_HZ = 200
IMU_LEAD = 2  # samples (10 ms at 200 Hz) before the frame time
IMU_KEEP = 400  # samples of history kept (2 s)


def pick(boxes: list[dict]) -> dict | None:
    """The box to chase, or None."""

    def weight(b: dict) -> float:
        return b["score"] * (b["x_max"] - b["x_min"] + 1) * (b["y_max"] - b["y_min"] + 1)

    preferred = [b for b in boxes if b["label"] == PREFERRED]
    pool = preferred or boxes
    return max(pool, key=weight) if pool else None


def plan(box: dict, yaw_rate: float) -> tuple[float, float]:
    """(heading_rad, distance_m) towards ``box``; positive heading is to the left."""
    cx = (box["x_min"] + box["x_max"]) / 2
    heading = math.atan2(IMAGE_CX - cx, FOCAL_PX) - yaw_rate * FRAME_PERIOD_S
    width_px = box["x_max"] - box["x_min"] + 1
    return heading, FOCAL_PX * BLOB_SIZE_M / width_px


def yaw_rate_at(gyro: dict[int, float], frame: int) -> float:
    """Yaw rate of the newest IMU sample at or before ``IMU_LEAD`` samples ahead of ``frame``."""
    target = frame * IMU_HZ // CAMERA_HZ - IMU_LEAD
    known = [i for i in gyro if i <= target]
    return gyro[max(known)] if known else 0.0


def main() -> None:
    node = Node()
    gyro: dict[int, float] = {}
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        if event["id"] == "imu":
            gyro[int(event["metadata"]["sample"])] = event["value"][0]["gyro_z"].as_py()
            if len(gyro) > IMU_KEEP:
                del gyro[min(gyro)]
        elif event["id"] == "bboxes":
            yaw_rate = yaw_rate_at(gyro, int(event["metadata"]["frame"]))
            box = pick(event["value"].to_pylist())
            heading, distance = plan(box, yaw_rate) if box else (0.0, 0.0)
            meta = {"label": box["label"] if box else "none", "frame": event["metadata"]["frame"]}
            node.send_output("target", pa.array([heading, distance], pa.float64()), meta)


if __name__ == "__main__":
    main()
