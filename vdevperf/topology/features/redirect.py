"""redirect: tc moves every frame arriving on one device out of another, with no bridge and no routing.

Each ``[[redirect]]`` names its namespace and two devices of it: every frame received by
``from`` is handed to the transmit path of ``to`` (an ingress qdisc on ``from``, a u32
filter matching everything, a mirred egress redirect action), and ``both = true`` adds
the reverse. This is how eBPF host routing (Cilium's bpf_redirect between pod veths)
moves packets: straight from one device's receive hook to another's transmit, skipping
the hub namespace's bridge, IP forwarding and netfilter. mirred stands in for the BPF
program because it needs no compiled object, and the kernel path after the hook (a
redirected skb queued for transmit) is the same.

The redirect is pure L2: frames keep the MAC addresses they were sent with, so the two
outer ends must reach each other as over a wire (one subnet; ARP and neighbour discovery
cross the redirect like everything else). A bridge port cannot be redirected, nor can the
frames of a device carrying stacked ones (macvlan, ipvlan, vxlan): tc's ingress hook runs
before the bridge and those drivers, which would never see the frames.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyroute2 import protocols
from pyroute2.netlink.exceptions import NetlinkError

from vdevperf.model import FeatureSpec
from vdevperf.topology import values
from vdevperf.topology.features import Draft, Feature, Scratch, View, entries

KEYS = ("netns", "from", "to", "both")
# The ingress qdisc's handle (ffff:), the parent of every filter on a device's receive path.
INGRESS_HANDLE = 0xFFFF0000
# A u32 key matching any frame: value 0 under mask 0 at offset 0 (tc's "match u32 0 0").
MATCH_ALL = "0x0/0x0+0"
# What the kernel answers when a qdisc, classifier or action it was not built with is asked for.
MISSING_MODULE = (errno.ENOENT, errno.EOPNOTSUPP)


@dataclass(frozen=True)
class Redirect(FeatureSpec):
    """Every frame received by device ``ingress`` is transmitted by device ``egress`` (short names, both in
    ``netns``)."""

    ingress: str
    egress: str


class RedirectFeature(Feature):
    key = "redirect"
    order = 50
    config = "CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_U32, CONFIG_NET_CLS_ACT, CONFIG_NET_ACT_MIRRED"
    summary = "tc redirect of all frames from one device to another ([[redirect]]: netns, from, to, both)"

    def parse(self, value: Any, draft: Draft) -> tuple[FeatureSpec, ...]:
        found: list[Redirect] = []
        for n, entry in enumerate(entries(value, self.key)):
            where = f"redirect #{n + 1}"
            for redirect in self._entry(entry, draft, where):
                taken = next((r for r in found if r.ingress == redirect.ingress), None)
                if taken is not None:
                    raise ValueError(
                        f"{where}: frames from '{redirect.ingress}' already go to '{taken.egress}'"
                        " (a device's ingress is redirected once)"
                    )
                stacked = next((d for d in draft.devices.values() if d.parent == redirect.ingress), None)
                if stacked is not None:
                    raise ValueError(
                        f"{where}: '{redirect.ingress}' carries {stacked.kind} '{stacked.name}', which would never see"
                        " its frames (tc's ingress hook takes them first)"
                    )
                found.append(redirect)
        return tuple(found)

    def _entry(self, entry: Any, draft: Draft, where: str) -> tuple[Redirect, ...]:
        table = values.table(entry, where, KEYS, required=("netns", "from", "to"))
        netns = draft.namespace(table["netns"], where)
        ends = []
        for key in ("from", "to"):
            dev = draft.device_in(table[key], netns, f"{where}: {key}")
            if dev.master is not None:
                raise ValueError(
                    f"{where}: {key}: device '{dev.name}' is a port of bridge '{dev.master}'"
                    " (tc's ingress hook runs before the bridge, so a redirect and a bridge cannot share a device)"
                )
            ends.append(dev.name)
        source, target = ends
        if source == target:
            raise ValueError(f"{where}: 'from' and 'to' are the same device '{source}'")
        both = values.typed(table.get("both", False), bool, f"{where}: both")
        forward = Redirect(self.key, netns, source, target)
        return (forward, Redirect(self.key, netns, target, source)) if both else (forward,)

    def apply(self, specs: Sequence[FeatureSpec], view: View) -> None:
        for spec in specs:
            assert isinstance(spec, Redirect)
            ipr = view.ipr(spec.netns)
            source = view.index(spec.ingress)
            # One ingress qdisc per device, and parse allows one redirect per device: this is its only qdisc.
            self.tc(ipr, f"ingress qdisc on '{spec.ingress}'", "add", "ingress", source)
            self.tc(
                ipr,
                f"redirect from '{spec.ingress}' to '{spec.egress}'",
                "add-filter",
                "u32",
                source,
                parent=INGRESS_HANDLE,
                prio=1,
                protocol=protocols.ETH_P_ALL,
                # u32 wants a class to report; the ingress qdisc has none and the action steals the frame anyway.
                target=0,
                keys=[MATCH_ALL],
                action={
                    "kind": "mirred",
                    "direction": "egress",
                    "action": "redirect",
                    "ifindex": view.index(spec.egress),
                },
            )

    def tc(self, ipr: Any, what: str, *args: Any, **kwargs: Any) -> None:
        """``ipr.tc(*args, **kwargs)``; a refusal names ``what`` was asked, and the kernel options if it lacks one."""
        try:
            ipr.tc(*args, **kwargs)
        except NetlinkError as exc:
            reason = os.strerror(exc.code) if exc.code else str(exc)
            if exc.code in MISSING_MODULE:
                reason += f" (needs {self.config})"
            raise OSError(exc.code, f"{what}: {reason}") from exc

    def sample(self, scratch: Scratch) -> tuple[FeatureSpec, ...]:
        # One redirect from the scratch pair's first end out of its second: qdisc, filter and action.
        first, second = scratch.devices[:2]
        return (Redirect(self.key, scratch.netns, first.name, second.name),)


FEATURE = RedirectFeature()
