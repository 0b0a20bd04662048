"""Planner: picks the target blob and turns it into a heading and a distance.

Inputs ``bboxes`` (from the detector) and ``imu``. The target is the best red blob (the
robot chases red), else the best blob of any colour; "best" is the largest score-weighted
area. Heading comes from a pinhole model (focal length 500 px) corrected by the yaw rate
times one frame period; distance assumes blobs are 0.3 m across.

The yaw rate is taken from the IMU sample stamped 10 ms before the camera frame (by sample
index, not by arrival), as a real fusion node aligns sensors on their timestamps. When the
detector's boxes come before that sample (the IMU runs late, or its timer started after the
camera's, as on another machine), the frame waits for it: the output then depends only on the
inputs' contents, never on whether a sample arrived just before or just after the boxes, so a
replay reproduces it exactly. (Taking "the newest sample received" instead made about one frame
in ten differ between a run and its replay once the two timers drifted apart.) A frame waits at
most ``IMU_PATIENCE`` frames; then the newest sample is used. Output ``target``: a float64
array ``[heading_rad, distance_m]`` (``[0, 0]`` when nothing is seen), metadata ``label``
(``"none"`` when nothing is seen) and ``frame``, in frame order.
"""

import math
from collections import deque

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
IMU_PATIENCE = 30  # frames that may wait for their IMU sample (1 s)


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


def imu_sample_of(frame: int) -> int:
    """Index of the IMU sample ``IMU_LEAD`` samples before the time of camera ``frame``."""
    return frame * IMU_HZ // CAMERA_HZ - IMU_LEAD


def yaw_rate_at(gyro: dict[int, float], sample: int) -> float:
    """Yaw rate of IMU ``sample``, else of the newest one before it (0 if none)."""
    known = [i for i in gyro if i <= sample]
    return gyro[max(known)] if known else 0.0


def main() -> None:
    node = Node()
    gyro: dict[int, float] = {}
    newest = -1  # the highest IMU sample index received
    waiting: deque[tuple[int, list[dict]]] = deque()  # frames whose IMU sample is not in yet

    def send(frame: int, boxes: list[dict]) -> None:
        box = pick(boxes)
        heading, distance = (
            plan(box, yaw_rate_at(gyro, imu_sample_of(frame))) if box else (0.0, 0.0)
        )
        meta = {"label": box["label"] if box else "none", "frame": frame}
        node.send_output("target", pa.array([heading, distance], pa.float64()), meta)

    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        if event["id"] == "imu":
            sample = int(event["metadata"]["sample"])
            gyro[sample] = event["value"][0]["gyro_z"].as_py()
            newest = max(newest, sample)
            if len(gyro) > IMU_KEEP:
                del gyro[min(gyro)]
        elif event["id"] == "bboxes":
            waiting.append((int(event["metadata"]["frame"]), event["value"].to_pylist()))
            if len(waiting) > IMU_PATIENCE:  # the IMU stalled: go on without its sample
                send(*waiting.popleft())
        while waiting and imu_sample_of(waiting[0][0]) <= newest:
            send(*waiting.popleft())


if __name__ == "__main__":
    main()
