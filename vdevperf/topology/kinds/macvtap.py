"""macvtap: a macvlan whose traffic is also readable through a character device (/dev/tapN), as VMs use it."""

from __future__ import annotations

from typing import Any

from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds._stacked import Stacked
from vdevperf.topology.kinds.macvlan import MACVLAN_MODES


class Macvtap(Stacked):
    name = "macvtap"
    config = "CONFIG_MACVTAP"
    order = 40
    modes = MACVLAN_MODES
    handler = "macvlan"  # the macvlan driver's handler: macvlan and macvtap share a parent
    offload_note = (
        "as macvlan; offloads toward the tap file are what its reader asks for with TUNSETOFFLOAD "
        "(none while no process has it open)"
    )

    def mode_args(self, dev: DeviceSpec) -> dict[str, Any]:
        return {"macvtap_mode": dev.mode}


KIND = Macvtap()
