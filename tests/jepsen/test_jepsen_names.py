"""names.NameMap: the test process resolves node host names through its own mapping while
a netns cluster is up, never through (or into) the machine's /etc/hosts."""

from __future__ import annotations

import socket

import pytest

from zraft.testing.jepsen.names import NameMap, _system_getaddrinfo, hosts_file


def address_of(name: str) -> str:
    return str(socket.getaddrinfo(name, 7000, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])


def test_names_resolve_while_installed_and_only_then() -> None:
    name = "node1.zrtest.test"  # RFC 2606: .test never resolves for real
    with pytest.raises(socket.gaierror):
        address_of(name)
    outer = NameMap({name: "127.0.0.7"})
    with outer:
        assert address_of(name) == address_of("NODE1.zrtest.test.") == "127.0.0.7"
        assert address_of("localhost") == "127.0.0.1"  # others go to the system resolver
        with NameMap({name: "127.0.0.8", "node2.zrtest.test": "127.0.0.9"}):
            assert address_of(name) == "127.0.0.8"  # the newest map wins
            assert address_of("node2.zrtest.test") == "127.0.0.9"
        assert address_of(name) == "127.0.0.7"
        with pytest.raises(socket.gaierror):
            address_of("node2.zrtest.test")
        with pytest.raises(ConnectionRefusedError):  # what clients dial with: 127.0.0.7:1
            socket.create_connection((name, 1), timeout=2).close()
    assert socket.getaddrinfo is _system_getaddrinfo
    with pytest.raises(socket.gaierror):
        address_of(name)
    outer.uninstall()  # twice is harmless


def test_hosts_file_maps_every_name_and_keeps_localhost() -> None:
    text = hosts_file({"node2.z.test": "10.1.2.2", "node1.z.test": "10.1.2.1"})
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1 localhost"
    assert lines[-2:] == ["10.1.2.1 node1.z.test", "10.1.2.2 node2.z.test"]
