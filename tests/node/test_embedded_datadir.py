"""zraft.Node (the embedded node) claims its data directory and checks its secret files as
``python -m zraft.node`` does: same errors, raised as ConfigError from start()."""

from __future__ import annotations

import pytest

import zraft
from zraft.cluster.local import free_port
from zraft.config import ConfigError
from zraft.filemodes import write_private

pytestmark = pytest.mark.timeout(60)


def node(port: int, data, **kw) -> zraft.Node:
    return zraft.Node(listen=f"127.0.0.1:{port}", data_dir=data, **kw)


def test_two_embedded_nodes_cannot_share_a_data_directory(tmp_path) -> None:
    write_private(tmp_path / "cookie", "c\n")
    port = free_port()
    data = tmp_path / "data"
    with node(port, data, cookie_file=str(tmp_path / "cookie")) as first:
        with pytest.raises(ConfigError, match=rf"node.log_dir {data} is in use by another "
                                              r"node \(pid \d+ at 127.0.0.1:"):
            node(free_port(), data, cookie="c").start()
        assert first.running
    moved = free_port()
    with pytest.raises(ConfigError, match=rf"belongs to the node at 127.0.0.1:{port} "
                                          rf"\({data / 'node.json'}\), not 127.0.0.1:{moved}"):
        node(moved, data, cookie="c").start()
    with node(port, data, cookie="c") as again:  # released at stop: the same node restarts
        assert again.running


def test_an_embedded_node_refuses_a_cookie_file_others_can_read(tmp_path) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("c\n")
    cookie.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"node.cookie_file {cookie} is readable by group or "
                                          rf"others \(mode 0644\): run chmod 600 {cookie}$"):
        node(free_port(), tmp_path / "data", cookie_file=str(cookie)).start()
