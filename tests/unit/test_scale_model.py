"""vdevperf scale without root: config checks, marks, percentiles, request encoding, the document, tables."""

from __future__ import annotations

import argparse
import ipaddress
import json

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vdevperf.cli.scale import add_parser, config_from_args
from vdevperf.errors import ResultError, VdevperfError
from vdevperf.scale import document, memory, table
from vdevperf.scale.model import (
    MAX_COUNT,
    CreationRun,
    Links,
    MemInfo,
    Method,
    Phase,
    ScaleConfig,
    ScaleResult,
    SetnsPoint,
    Settle,
    Teardown,
)
from vdevperf.scale.rtnl import Rtnl
from vdevperf.scale.runner import chunks, marks_from
from vdevperf.scale.session import Layout
from vdevperf.scale.setns import percentile


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"count": 0}, "--count"),
        ({"count": MAX_COUNT + 1}, "--count"),
        ({"mark": 0}, "--mark"),
        ({"methods": ()}, "--method"),
        ({"methods": (Method.IP, Method.IP)}, "--method"),
        ({"bridge": True}, "--bridge"),
        ({"addresses": True}, "--addresses"),
        ({"links": Links.VETH, "bridge": True, "count": 1024}, "--bridge"),
        ({"setns_samples": 1}, "--setns-samples"),
        ({"settle_timeout_s": 0}, "--settle-timeout"),
        ({"phases": ()}, "--phases"),
    ],
)
def test_config_names_the_flag_at_fault(changes, flag):
    with pytest.raises(ValueError, match=f"^{flag}: "):
        ScaleConfig(**changes)


def test_config_defaults_and_setns_levels():
    config = ScaleConfig()
    assert (config.count, config.mark, config.links) == (1000, 250, Links.NONE)
    assert config.methods == tuple(Method) and config.phases == tuple(Phase)
    assert config.setns_levels == (1, 16, 64, 512, 1000)
    assert ScaleConfig(count=40).setns_levels == (1, 16, 40)
    assert not ScaleConfig(phases=(Phase.CREATE,)).build_phases


def test_chunks_cover_every_index_once_and_marks_follow_them():
    assert [list(c) for c in chunks(10, 4)] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert len(chunks(1000, 250)) == 4 and len(chunks(64, 16)) == 4
    marks = marks_from([(250, 0.5), (500, 1.5), (750, 2.0)])
    assert [m.rate_per_s for m in marks] == [500, 250, 500]
    assert [m.cumulative_rate_per_s for m in marks] == [500, pytest.approx(333.33, rel=1e-3), 375]


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_layout_names_fit_the_kernel_and_the_scheme():
    layout = Layout("3f0a")
    assert layout.ns(1) == "vdp-3f0a-n0001" and layout.ns(MAX_COUNT) == "vdp-3f0a-n99999"
    assert all(len(n) <= 15 for n in (layout.ns(MAX_COUNT), layout.hub, layout.probe))
    assert all(len(n) <= 15 for n in (layout.hub_end(MAX_COUNT), layout.ns_end, layout.bridge))
    assert layout.mountpoint_source(0) == "vdp-3f0a-mnt0" and layout.mountpoint_source(MAX_COUNT) == "vdp-3f0a-mnt3"
    assert layout.address(1) == ipaddress.IPv4Interface("10.0.0.2/8") != layout.bridge_address


def test_rtnl_requests_decode_with_pyroute2():
    with Rtnl() as rtnl:
        rtnl.veth_add("vdp3f0ae0", 2, True, "vdp3f0ah0001", 7)
        rtnl.addr_add(2, ipaddress.IPv4Interface("10.0.0.2/8"))
        rtnl.link_set("vdp3f0ah0001", up=True, master_index=2)
        veth, addr, link = rtnl._queue
    msg = ifinfmsg(veth)
    msg.decode()
    assert (msg["index"], msg["flags"], msg["change"]) == (2, 1, 1)
    assert msg.get_attr("IFLA_IFNAME") == "vdp3f0ae0"
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = dict(info.get_attr("IFLA_INFO_DATA")["attrs"][0][1]["attrs"])
    assert peer == {"IFLA_IFNAME": "vdp3f0ah0001", "IFLA_NET_NS_FD": 7}
    msg = ifaddrmsg(addr)
    msg.decode()
    assert (msg["index"], msg["prefixlen"], msg.get_attr("IFA_LOCAL")) == (2, 8, "10.0.0.2")
    msg = ifinfmsg(link)
    msg.decode()
    assert (msg["index"], msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_MASTER")) == (0, "vdp3f0ah0001", 2)


def test_capacity_refuses_counts_memory_cannot_take():
    with pytest.raises(VdevperfError, match="^--count: 99,999 namespaces need about") as info:
        memory.check_capacity(ScaleConfig(count=MAX_COUNT, links=Links.VETH))
    assert "\n" not in str(info.value)
    assert memory.estimate_kib(ScaleConfig(count=10, phases=(Phase.CREATE,))) == 10 * memory.NETNS_ESTIMATE_KIB


def _mem(t_s: float = 0.0, slab: int = 1000) -> MemInfo:
    return MemInfo(
        t_s=t_s, mem_available_kib=10_000_000, slab_kib=slab, sunreclaim_kib=slab, percpu_kib=10, netns_objects=40
    )


def _result() -> ScaleResult:
    config = ScaleConfig(count=500, mark=250, methods=(Method.NETLINK,), phases=(Phase.CREATE, Phase.SETNS))
    settle = Settle(
        timeout_s=30,
        unreclaimable_s=0.4,
        mem_available_s=None,
        netns_objects_s=None,
        series=(_mem(0.0, 9000), _mem(0.4, 1000)),
    )
    run = CreationRun(
        method=Method.NETLINK,
        links=Links.NONE,
        namespaces=500,
        total_s=0.5,
        marks=marks_from([(250, 0.2), (500, 0.5)]),
        before=_mem(),
        after=_mem(slab=101_000),
        teardown=Teardown(namespaces=500, total_s=0.05, settle=settle),
    )
    point = SetnsPoint(
        namespaces=500,
        samples=100,
        round_trip_median_us=2.0,
        round_trip_p99_us=4.0,
        noop_median_us=1.0,
        noop_p99_us=2.0,
    )
    return ScaleResult(config=config, run_id="3f0a", creation=(run,), setns=(point,), phases_done=("create",))


def test_document_round_trip_and_version_checks(tmp_path):
    result = _result()
    out = document.ScaleFile(path=tmp_path / "s.json", command=["vdevperf", "scale"], environment={})
    out.update(result, complete=True)
    doc = document.load(out.path)
    assert doc["kind"] == "scale" and doc["schema_version"] == 1 and doc["complete"]
    (run,) = doc["methods"]
    assert run["memory_per_namespace"]["slab_kib"] == 200 and len(run["marks"]) == 2
    assert run["teardown"]["settle"]["settled_s"] == 0.4 and len(run["teardown"]["settle"]["series"]) == 2
    assert doc["config"]["methods"] == ["netlink"] and doc["setns"][0]["round_trip_p99_us"] == 4.0
    newer = dict(doc, schema_version=2)
    (tmp_path / "new.json").write_text(json.dumps(newer))
    with pytest.raises(ResultError, match="newer"):
        document.load(tmp_path / "new.json")
    (tmp_path / "other.json").write_text(json.dumps({"schema_version": 3, "runs": []}))
    with pytest.raises(ResultError, match="not a scale result"):
        document.load(tmp_path / "other.json")


def test_tables_have_a_row_per_mark_and_per_method():
    result = _result()
    assert len(table.marks_table(result.creation[0]).splitlines()) == 2 + 2
    summary = table.creation_table(result.creation)
    assert len(summary.splitlines()) == 3 and "0.4" in summary.splitlines()[2]
    assert "timed out" in table.teardown_line(Teardown(5, 0.01, Settle(30, None, None, None)))
    assert len(table.setns_table(result.setns).splitlines()) == 3


def test_command_flags_become_a_config_or_a_one_line_error():
    top = argparse.ArgumentParser()
    add_parser(top.add_subparsers(dest="command"))
    args = top.parse_args(
        [
            "scale",
            "--count",
            "64",
            "--mark",
            "16",
            "--method",
            "netlink,ip-batch",
            "--links",
            "veth",
            "--up",
            "--phases",
            "create,setns",
            "--setns-counts",
            "1,8",
        ]
    )
    config = config_from_args(args)
    assert config.methods == (Method.NETLINK, Method.IP_BATCH) and config.links is Links.VETH and config.up
    assert config.phases == (Phase.CREATE, Phase.SETNS) and config.setns_levels == (1, 8, 64)
    with pytest.raises(VdevperfError, match="^--addresses: needs --links veth$"):
        config_from_args(top.parse_args(["scale", "--addresses"]))
