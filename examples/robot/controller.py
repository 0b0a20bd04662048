"""Controller: turns the planner's target into velocity commands.

Input ``target`` (``[heading_rad, distance_m]``, metadata ``label``, ``frame``). A
proportional law: turn towards the target, drive forward until 0.5 m away, slower when the
target is off to the side; stand still when there is no target. Output ``cmd_vel``: a
one-row StructArray ``linear`` (m/s), ``angular`` (rad/s), float64, metadata ``frame``.
Once per second of camera time (every 30th frame) it prints the command, e.g.
``t=1.00s cmd linear=0.48 angular=-0.12 (target red, 1.70 m)``; ``t`` is the frame index
over 30 Hz, never the wall clock, so the output replays identically.
"""

import math

import pyarrow as pa

from dora import Node

K_ANGULAR = 1.5
K_LINEAR = 0.4
STOP_DISTANCE_M = 0.5
MAX_LINEAR = 0.8
MAX_ANGULAR = 1.0
CAMERA_HZ = 30
PRINT_EVERY = 30


def command(heading: float, distance: float, has_target: bool) -> tuple[float, float]:
    """(linear m/s, angular rad/s) for one target."""
    if not has_target:
        return 0.0, 0.0
    angular = max(-MAX_ANGULAR, min(MAX_ANGULAR, K_ANGULAR * heading))
    linear = K_LINEAR * max(0.0, distance - STOP_DISTANCE_M) * max(0.0, math.cos(heading))
    return min(MAX_LINEAR, linear), angular


def main() -> None:
    node = Node()
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT" or event["id"] != "target":
            continue
        heading, distance = event["value"].to_pylist()
        label = event["metadata"]["label"]
        frame = int(event["metadata"]["frame"])
        linear, angular = command(heading, distance, label != "none")
        cmd = pa.StructArray.from_arrays(
            [pa.array([linear], pa.float64()), pa.array([angular], pa.float64())],
            names=["linear", "angular"],
        )
        node.send_output("cmd_vel", cmd, {"frame": frame})
        if frame % PRINT_EVERY == 0:
            t = frame / CAMERA_HZ
            print(
                f"t={t:.2f}s cmd linear={linear:.2f} angular={angular:+.2f}"
                f" (target {label}, {distance:.2f} m)",
                flush=True,
            )


if __name__ == "__main__":
    main()
