"""Simulated IMU at 200 Hz: accelerometer (m/s^2) and gyroscope (rad/s), float64.

Sample ``i`` is a pure function of ``i`` (time ``t = i / 200`` s): the robot sways gently
and turns left and right with a 5 s period. Output ``imu``: a one-row StructArray with fields
``accel_x, accel_y, accel_z, gyro_x, gyro_y, gyro_z``, metadata ``sample`` (index) and
``rate_hz``.
"""

import math

import pyarrow as pa

from dora import Node

RATE_HZ = 200
FIELDS = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")


def sample(i: int) -> dict[str, float]:
    """IMU reading number ``i``."""
    t = i / RATE_HZ
    return {
        "accel_x": 0.20 * math.sin(2 * math.pi * 0.5 * t),
        "accel_y": 0.05 * math.cos(2 * math.pi * 0.5 * t),
        "accel_z": 9.81 + 0.02 * math.sin(2 * math.pi * 3.0 * t),
        "gyro_x": 0.01 * math.sin(2 * math.pi * 1.0 * t),
        "gyro_y": 0.01 * math.cos(2 * math.pi * 1.0 * t),
        "gyro_z": 0.30 * math.sin(2 * math.pi * 0.2 * t),
    }


def to_arrow(reading: dict[str, float]) -> pa.StructArray:
    arrays = [pa.array([reading[f]], pa.float64()) for f in FIELDS]
    return pa.StructArray.from_arrays(arrays, names=list(FIELDS))


def main() -> None:
    node = Node()
    i = 0
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        node.send_output("imu", to_arrow(sample(i)), {"sample": i, "rate_hz": RATE_HZ})
        i += 1


if __name__ == "__main__":
    main()
