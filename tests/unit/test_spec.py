"""Topology files: every bundled one loads, every bad one fails with the file and the problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdevperf.errors import TopologyError
from vdevperf.model import DeviceKind, TopologySpec
from vdevperf.topology.spec import BUNDLED_DIR, bundled_topologies, load_topology, parse_topology

BAD_DIR = Path(__file__).resolve().parents[1] / "data" / "bad_topologies"
BAD_FILES = sorted(BAD_DIR.glob("*.toml"))


def expectation(path: Path) -> str:
    """The substring promised by the file's `# expect:` line."""
    for line in path.read_bytes().splitlines():
        if line.startswith(b"# expect:"):
            return line.split(b":", 1)[1].decode("ascii").strip()
    raise AssertionError(f"{path} has no '# expect:' line")


def test_bundled_order():
    names = bundled_topologies()
    assert names[:5] == ["loopback", "veth", "bridge", "macvlan", "ipvlan"]
    assert names[5:] == sorted(names[5:])


@pytest.mark.parametrize("name", bundled_topologies())
def test_bundled_topology_loads(name):
    spec = load_topology(name)
    assert isinstance(spec, TopologySpec)
    assert spec.name == name
    assert spec.description
    assert spec.source.endswith(f"{name}.toml")
    # A bundled file starts with a comment saying what path it measures.
    assert (BUNDLED_DIR / f"{name}.toml").read_text().startswith("# ")


@pytest.mark.parametrize("name", bundled_topologies())
def test_bundled_topology_uses_benchmark_ranges(name):
    import ipaddress

    v4 = ipaddress.ip_network("198.18.0.0/15")
    v6 = ipaddress.ip_network("2001:2::/48")
    spec = load_topology(name)
    for dev in spec.devices:
        for iface in dev.addresses:
            assert iface.ip in (v4 if iface.version == 4 else v6), (dev.name, iface)


def test_bundled_loaded_by_path_equals_by_name():
    by_path = load_topology(str(BUNDLED_DIR / "veth.toml"))
    by_name = load_topology("veth")
    assert by_path.devices == by_name.devices and by_path.client == by_name.client


def test_shapes_of_bundled():
    assert load_topology("loopback").devices == ()
    macvlan = load_topology("macvlan")
    stacked = [d for d in macvlan.devices if d.kind is DeviceKind.MACVLAN]
    assert {d.netns for d in stacked} == {"cli", "srv"} and {d.mode for d in stacked} == {"bridge"}
    assert {d.parent for d in stacked} == {"p0"} and macvlan.device("p0").netns == "hub"
    ipvlan = load_topology("ipvlan")
    assert {d.mode for d in ipvlan.devices if d.kind is DeviceKind.IPVLAN} == {"l2"}


def test_defaults():
    spec = parse_topology(
        b'namespaces = ["a", "b"]\n'
        b'[[device]]\nname = "p0"\nkind = "veth"\nnetns = "a"\npeer = "p1"\n'
        b'[[device]]\nname = "p1"\nkind = "veth"\nnetns = "a"\npeer = "p0"\n'
        b'[[device]]\nname = "m0"\nkind = "macvlan"\nparent = "p0"\nnetns = "b"\naddresses = ["198.18.0.1/24"]\n'
        b'[client]\nnetns = "b"\nipv4 = "198.18.0.1"\n[server]\nnetns = "b"\nipv4 = "127.0.0.1"\n',
        "inline.toml", default_name="inline")
    assert spec.name == "inline" and spec.source == "inline.toml"
    assert spec.device("m0").mode == "bridge"


def test_bad_corpus_covers_enough():
    assert len(BAD_FILES) >= 25


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_topology(path):
    with pytest.raises(TopologyError) as info:
        load_topology(str(path))
    message = str(info.value)
    assert info.value.what == str(path)
    assert message.startswith(f"{path}: ")
    assert expectation(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(TopologyError, match="cannot read the file: No such file or directory") as info:
        load_topology(str(path))
    assert info.value.what == str(path)


def test_directory_is_unreadable(tmp_path):
    path = tmp_path / "dir.toml"
    path.mkdir()
    with pytest.raises(TopologyError, match="cannot read the file: Is a directory"):
        load_topology(str(path))


def test_unknown_bundled_name():
    with pytest.raises(TopologyError, match="no bundled topology of that name") as info:
        load_topology("nosuch")
    assert info.value.what == "nosuch"
    assert "loopback, veth, bridge, macvlan, ipvlan" in str(info.value)
