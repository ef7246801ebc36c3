"""ipvlan: devices sharing their parent's MAC address, switched by IP address inside the ipvlan driver."""

from __future__ import annotations

from typing import Any

from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds._stacked import Stacked

# IFLA_IPVLAN_MODE values from linux/if_link.h (enum ipvlan_mode).
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}


class Ipvlan(Stacked):
    name = "ipvlan"
    config = "CONFIG_IPVLAN"
    order = 50
    modes = tuple(IPVLAN_MODES)
    handler = "ipvlan"
    offload_note = (
        "takes its parent's features at creation; in l3 and l3s modes packets pass the parent's "
        "routing first, in l2 they are switched by address inside the driver"
    )

    def mode_args(self, dev: DeviceSpec) -> dict[str, Any]:
        return {"ipvlan_mode": IPVLAN_MODES[dev.mode or self.modes[0]]}


KIND = Ipvlan()
