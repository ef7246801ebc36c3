"""Topology files: every bundled one loads, every bad one fails with the file and the problem named."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from vdevperf import bench, cli
from vdevperf.errors import TopologyError
from vdevperf.model import MAX_NAME_CHARS, TopologySpec
from vdevperf.topology import ledger
from vdevperf.topology.spec import BUNDLED_DIR, MAX_FILE_BYTES, bundled_topologies, load_topology, parse_topology

BAD_DIR = Path(__file__).resolve().parents[1] / "data" / "bad_topologies"
BAD_FILES = sorted(BAD_DIR.glob("*.toml"))
# Corpus entries that cannot carry an `# expect:` line (links to devices): what each promises.
LINKED = {"dev_zero.toml": "cannot read the file: a character device, not a regular file"}


def expectation(path: Path) -> str:
    """The substring promised by the file's `# expect:` line."""
    if path.is_symlink():
        return LINKED[path.name]
    for line in path.read_bytes().splitlines():
        if line.startswith(b"# expect:"):
            return line.split(b":", 1)[1].decode("ascii").strip()
    raise AssertionError(f"{path} has no '# expect:' line")


def test_bundled_order():
    names = bundled_topologies()
    order = ["loopback", "veth", "routed", "tc-redirect", "bridge", "bridge-nat", "macvlan", "ipvlan", "vxlan"]
    assert names[: len(order)] == order
    assert names[len(order) :] == sorted(names[len(order) :])


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
    stacked = [d for d in macvlan.devices if d.kind == "macvlan"]
    assert {d.netns for d in stacked} == {"cli", "srv"} and {d.mode for d in stacked} == {"bridge"}
    assert {d.parent for d in stacked} == {"p0"} and macvlan.device("p0").netns == "hub"
    ipvlan = load_topology("ipvlan")
    assert {d.mode for d in ipvlan.devices if d.kind == "ipvlan"} == {"l2"}


def test_defaults():
    spec = parse_topology(
        b'namespaces = ["a", "b"]\n'
        b'[[device]]\nname = "p0"\nkind = "veth"\nnetns = "a"\npeer = "p1"\n'
        b'[[device]]\nname = "p1"\nkind = "veth"\nnetns = "a"\npeer = "p0"\n'
        b'[[device]]\nname = "m0"\nkind = "macvlan"\nparent = "p0"\nnetns = "b"\naddresses = ["198.18.0.1/24"]\n'
        b'[client]\nnetns = "b"\nipv4 = "198.18.0.1"\n[server]\nnetns = "b"\nipv4 = "127.0.0.1"\n',
        "inline.toml",
        default_name="inline",
    )
    assert spec.name == "inline" and spec.source == "inline.toml"
    assert spec.device("m0").mode == "bridge"


def test_bad_corpus_covers_enough():
    assert len(BAD_FILES) >= 55


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
    with pytest.raises(TopologyError, match="cannot read the file: a directory, not a regular file"):
        load_topology(str(path))


def _alarm(signum, frame):
    raise AssertionError("loading the topology blocked")


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "fifo.toml"
    os.mkfifo(path)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(5)
    try:
        with pytest.raises(TopologyError, match="cannot read the file: a FIFO, not a regular file"):
            load_topology(str(path))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_device_is_refused_without_reading_it(device):
    with pytest.raises(TopologyError, match="a character device, not a regular file") as info:
        load_topology(device)
    assert info.value.what == device


def test_a_file_over_the_size_cap_is_refused_and_one_at_it_is_read(tmp_path):
    veth = (BUNDLED_DIR / "veth.toml").read_bytes()
    at_cap = tmp_path / "at.toml"
    at_cap.write_bytes(veth + b"#" * (MAX_FILE_BYTES - len(veth) - 1) + b"\n")
    assert at_cap.stat().st_size == MAX_FILE_BYTES
    assert load_topology(str(at_cap)).name == "veth"
    over = tmp_path / "over.toml"
    over.write_bytes(veth + b"#" * (MAX_FILE_BYTES - len(veth)) + b"\n")
    with pytest.raises(TopologyError, match=f"larger than {MAX_FILE_BYTES // 1024} KiB"):
        load_topology(str(over))


def test_a_file_name_with_control_characters_cannot_become_the_name(tmp_path):
    text = (BUNDLED_DIR / "veth.toml").read_text().replace('name = "veth"\n', "")
    bad = tmp_path / "veth\x1b[2J.toml"
    bad.write_text(text)
    with pytest.raises(TopologyError) as info:
        load_topology(str(bad))
    message = str(info.value)
    assert "'name' (by default the file name) must be 1-64 printable characters" in message
    assert "\x1b" not in message and "\\x1b" in message  # escaped, never the raw escape character
    good = tmp_path / "from-its-file-name.toml"
    good.write_text(text)
    assert load_topology(str(good)).name == "from-its-file-name"


def test_names_and_descriptions_at_their_caps_load():
    base = (BUNDLED_DIR / "veth.toml").read_text()
    text = base.replace('name = "veth"', f'name = "{"n" * MAX_NAME_CHARS}"')
    text = text.replace("description = ", f'description = "{"d" * 200}"\n# ')
    spec = parse_topology(text, "caps.toml")
    assert len(spec.name) == MAX_NAME_CHARS and len(spec.description) == 200
    # Printable is not ASCII: names in other scripts are welcome.
    assert parse_topology(base.replace('name = "veth"', 'name = "véth-Ω"'), "u.toml").name == "véth-Ω"


def test_the_same_prefix_on_two_namespaces_or_on_one_device_is_no_overlap():
    base = (BUNDLED_DIR / "veth.toml").read_text()
    # veth's two ends share 198.18.0.0/24, but in different namespaces: one path, as intended.
    assert load_topology("veth")
    text = base.replace(
        'addresses = ["198.18.0.1/24", "2001:2::1/64"]',
        'addresses = ["198.18.0.1/24", "198.18.0.3/24", "2001:2::1/64"]',
    )
    assert len(parse_topology(text, "secondary.toml").device("c0").addresses) == 3


@pytest.mark.parametrize("command", ["run", "compare"])
@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_topology_through_the_cli_is_one_line_exit_2_and_builds_nothing(path, command, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a bad topology file reached the builder")

    monkeypatch.setattr(bench, "build", never)
    monkeypatch.setattr(ledger.Ledger, "create", never)
    argv = [command, str(path), "-l", "1"] if command == "run" else [command, "veth", str(path), "-l", "1"]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"vdevperf: {path}: ") and err.count("\n") == 1, err
    assert expectation(path) in err
    assert err[:-1].isprintable()  # no control character reaches the terminal


def test_unknown_bundled_name():
    with pytest.raises(TopologyError, match="no bundled topology of that name") as info:
        load_topology("nosuch")
    assert info.value.what == "nosuch"
    assert "loopback, veth, routed, tc-redirect, bridge, bridge-nat, macvlan, ipvlan, vxlan" in str(info.value)
