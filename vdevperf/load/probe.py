"""Runs the frame-size capture (measure.capture) in its own forked process, inside the receiver's namespace.

The probe is an endpoint like the load's (forked, descriptors closed, dies
with the parent) that captures during the warm-up and ends by itself within
its time bound, so it never overlaps the measured window.
"""

from __future__ import annotations

import time

from vdevperf.load import endpoint
from vdevperf.load.endpoint import Channel, Endpoint
from vdevperf.measure import capture
from vdevperf.measure.capture import CaptureSpec


def start(spec: CaptureSpec) -> Endpoint:
    """Fork the capture process; it ends by itself within ``spec.max_seconds``."""

    def body(channel: Channel) -> None:
        channel.send({"event": "done", **capture.collect(spec)})

    return endpoint.start("capture", spec.netns_path, None, body)


def finish(proc: Endpoint, spec: CaptureSpec) -> dict[str, object]:
    """Wait for the capture and summarise the frame sizes it saw."""
    try:
        report = proc.receive(time.monotonic() + spec.max_seconds + 10)
        proc.join(time.monotonic() + 5)
    finally:
        proc.close()
    return capture.summarise(report["sizes"], spec, report["cpu_s"], report["seconds"])
