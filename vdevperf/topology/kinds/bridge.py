"""bridge: a software switch in one namespace; other devices of that namespace join it as ports (``master``)."""

from __future__ import annotations

from vdevperf.model import DeviceSpec
from vdevperf.topology.kinds import Kind, Request, View


class Bridge(Kind):
    name = "bridge"
    config = "CONFIG_BRIDGE"
    order = 20
    carrier = True
    has_ports = True
    offload_note = (
        "its features are recomputed from its ports' as they join (a feature one port lacks is off on the "
        "bridge); forwarding between ports keeps GSO segments whole"
    )

    def check_port(self, port: DeviceSpec, bridge: DeviceSpec) -> None:
        where = f"device '{port.name}'"
        if port.kind == self.name:
            raise ValueError(f"{where}: a bridge cannot be a port of bridge '{bridge.name}'")
        if bridge.netns != port.netns:
            raise ValueError(
                f"{where}: master '{bridge.name}' is in namespace '{bridge.netns}', "
                f"not in '{port.netns}' like the device"
            )

    def request(self, dev: DeviceSpec, view: View) -> Request:
        # STP off and no forward delay: ports forward as soon as they are up.
        args = self.common_args(dev, view) | {"br_stp_state": 0, "br_forward_delay": 0}
        return Request(dev.netns, args, (dev.name,))


KIND = Bridge()
