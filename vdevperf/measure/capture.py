"""Frame-size probe: what the receiving device really sees, captured with scapy (AF_PACKET).

It verifies offload settings: with TSO/GSO or GRO on, a veth receiver sees
frames far above the MTU (segmentation deferred or receive coalesced); with
them off, none. The capture runs in its own forked process inside the
receiver's namespace, during the warm-up, and is bounded in frames and
seconds, so it never competes with the measured window; its own CPU time and
duration are reported as its cost. Only incoming frames count (scapy's
L2Socket drops PACKET_OUTGOING), so a receiver's own ACKs are left out.
What forks the probe's process is load.probe's: this module only captures
and summarises.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

MAX_FRAMES = 2000
MAX_SECONDS = 0.5


@dataclass(frozen=True)
class CaptureSpec:
    """Where to capture: the receiving device's namespace path, name and MTU."""

    netns_path: str | None
    ifname: str
    mtu: int
    max_frames: int = MAX_FRAMES
    max_seconds: float = MAX_SECONDS


def prepare() -> None:
    """Import scapy in the parent: its ~1 s import must not eat a forked capture's time."""
    import scapy.all  # noqa: F401


def collect(spec: CaptureSpec) -> dict:
    """Capture incoming frames on ``spec``'s device (in the current namespace) until the frame or time
    bound; their sizes, and what capturing cost (CPU seconds, seconds). Runs in the probe's own process."""
    from scapy.all import conf, sniff

    start_cpu, start = time.process_time(), time.monotonic()
    sizes: list[int] = []
    # conf.L2socket (not L2listen) drops the frames the device sends.
    sock = conf.L2socket(iface=spec.ifname, promisc=False)
    try:
        sniff(
            opened_socket=sock,
            store=False,
            count=spec.max_frames,
            timeout=spec.max_seconds,
            prn=lambda pkt: sizes.append(len(pkt)),
        )
    finally:
        sock.close()
    return {"sizes": sizes, "cpu_s": time.process_time() - start_cpu, "seconds": time.monotonic() - start}


def summarise(sizes: list[int], spec: CaptureSpec, cpu_s: float, seconds: float) -> dict:
    """Frame-size statistics (bytes, Ethernet header included) and the probe's cost."""
    above = sum(1 for s in sizes if s > spec.mtu + 14)
    return {
        "device": spec.ifname,
        "mtu": spec.mtu,
        "frames": len(sizes),
        "mean_bytes": statistics.fmean(sizes) if sizes else None,
        "p50_bytes": statistics.median(sizes) if sizes else None,
        "max_bytes": max(sizes) if sizes else None,
        "above_mtu_pct": 100.0 * above / len(sizes) if sizes else None,
        "cpu_s": cpu_s,
        "seconds": seconds,
    }
