"""macvlan: a device with its own MAC address on a parent; in bridge mode siblings switch inside the driver."""

from __future__ import annotations

from typing import Any

from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds._stacked import Stacked

# linux/if_link.h's enum macvlan_mode, by the names pyroute2 takes.
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru", "source")


class Macvlan(Stacked):
    name = "macvlan"
    config = "CONFIG_MACVLAN"
    order = 30
    modes = MACVLAN_MODES
    handler = "macvlan"
    offload_note = (
        "takes its parent's features at creation and follows their changes; traffic between two macvlans "
        "of one parent never reaches the parent's transmit path"
    )

    def mode_args(self, dev: DeviceSpec) -> dict[str, Any]:
        return {"macvlan_mode": dev.mode}


KIND = Macvlan()
