"""Checks on values read from a topology file, shared by the parser and the feature modules.

Each returns the checked value or raises ValueError with the message that ends the
one-line error (the parser adds the file), so every part of a file is judged in the
same words.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    list: "a list",
    dict: "a table",
    bool: "a boolean",
    float: "a number",
}


def type_name(value: object) -> str:
    """How errors name the type of a value found in a file."""
    return TYPE_NAMES.get(type(value), type(value).__name__)


def typed(value: Any, kind: type, where: str) -> Any:
    """``value`` if it is of ``kind``; bool is an int to Python, never to a topology file."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where} must be {TYPE_NAMES[kind]}, not {type_name(value)}")
    return value


def table(value: Any, where: str, known: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """A TOML table with only ``known`` keys and every ``required`` one."""
    found: dict[str, Any] = typed(value, dict, where)
    names = tuple(known)
    for key in found:
        if key not in names:
            raise ValueError(f"{where}: unknown key '{key}' (known: {', '.join(names)})")
    for key in required:
        if key not in found:
            raise ValueError(f"{where}: missing key '{key}'")
    return found


def address(value: Any, where: str) -> IPAddress:
    """An IPv4 or IPv6 address, written without a prefix length."""
    text = typed(value, str, where)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{where} '{text}' is not an IP address (write it without prefix length)") from None


def network(value: Any, where: str) -> IPNetwork:
    """A destination prefix such as ``198.18.0.0/24``; host bits must be zero."""
    text = typed(value, str, where)
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        raise ValueError(f"{where} '{text}' is not a network prefix (such as 198.18.0.0/24 or 2001:db8::/64)") from None
