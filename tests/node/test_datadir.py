"""One node per data directory (zraft.node.datadir) and secret files (zraft.filemodes):
the lock, the identity in node.json, directories from before node.json, corrupt records."""

from __future__ import annotations

import os

import pytest

from zraft.config import ConfigError, NodeConfig
from zraft.filemodes import check_private, write_private
from zraft.node.datadir import IDENTITY_FILE, claim, read_identity
from zraft.storage.meta import RaftMeta, write_meta
from zraft.storage.naming import peer_log_path


def config(tmp_path, listen: str = "127.0.0.1:7001", snapshots: str | None = None) -> NodeConfig:
    data = str(tmp_path / "data")
    os.makedirs(data, exist_ok=True)
    if snapshots:
        os.makedirs(snapshots, exist_ok=True)
    return NodeConfig(listen=listen, cookie="c", log_dir=data, snapshot_dir=snapshots or data)


def store_peer(cfg: NodeConfig, peer_id: str, cluster_id: str = "") -> None:
    path = peer_log_path(cfg.log_dir, peer_id)
    path.mkdir(parents=True)
    write_meta(path, RaftMeta(peer_id=peer_id, backend="dict", cluster_id=cluster_id))


def test_the_lock_is_exclusive_and_released(tmp_path) -> None:
    cfg = config(tmp_path)
    held = claim(cfg)
    with pytest.raises(ConfigError, match=r"node.log_dir .* is in use by another node \(pid "
                                          rf"{os.getpid()} at 127.0.0.1:7001: "):
        claim(cfg)
    held.release()
    claim(cfg).release()


def test_a_separate_snapshot_directory_is_locked_too(tmp_path) -> None:
    cfg = config(tmp_path, snapshots=str(tmp_path / "snaps"))
    held = claim(cfg)
    other = NodeConfig(listen="127.0.0.1:7002", cookie="c", log_dir=str(tmp_path / "other"),
                       snapshot_dir=cfg.snapshot_dir)
    os.makedirs(other.log_dir)
    with pytest.raises(ConfigError, match=r"node.snapshot_dir .* is in use by another node"):
        claim(other)
    held.release()


def test_identity_records_the_address_and_the_peers_cluster_ids(tmp_path) -> None:
    cfg = config(tmp_path)
    store_peer(cfg, "a@127.0.0.1:7001", "cluster-1")
    claim(cfg).release()
    assert read_identity(cfg) == {"version": 1, "listen": "127.0.0.1:7001",
                                  "peers": {"a@127.0.0.1:7001": "cluster-1"}}
    with pytest.raises(ConfigError, match=r"belongs to the node at 127.0.0.1:7001 \(.*node.json"
                                          r"\), not 127.0.0.1:7002: set listen"):
        claim(config(tmp_path, "127.0.0.1:7002"))


def test_a_directory_without_node_json_takes_its_address_from_its_peers(tmp_path) -> None:
    cfg = config(tmp_path)
    store_peer(cfg, "a@127.0.0.1:7001")
    with pytest.raises(ConfigError, match=r"belongs to the node at 127.0.0.1:7001 \(the ids "
                                          r"of the peers in .*\), not 127.0.0.1:7009"):
        claim(config(tmp_path, "127.0.0.1:7009"))
    assert not (tmp_path / "data" / IDENTITY_FILE).exists()  # refused: nothing written
    claim(cfg).release()
    assert read_identity(cfg)["listen"] == "127.0.0.1:7001"  # type: ignore[index]


def test_a_peer_directory_of_another_cluster_is_refused(tmp_path) -> None:
    cfg = config(tmp_path)
    store_peer(cfg, "a@127.0.0.1:7001", "cluster-1")
    claim(cfg).release()
    path = peer_log_path(cfg.log_dir, "a@127.0.0.1:7001")
    write_meta(path, RaftMeta(peer_id="a@127.0.0.1:7001", backend="dict",
                              cluster_id="cluster-2"))
    with pytest.raises(ConfigError, match=r"is of cluster 'cluster-2', but .* records "
                                          r"'cluster-1'"):
        claim(cfg)


@pytest.mark.parametrize("text", ["", "{", "[]", "[" * 100000, "\xff", '{"listen": 7}',
                                  '{"listen": "x", "peers": 1}'])
def test_a_corrupt_identity_file_is_refused(tmp_path, text: str) -> None:
    cfg = config(tmp_path)
    (tmp_path / "data" / IDENTITY_FILE).write_text(text)
    with pytest.raises(ConfigError, match="is not a zraft node identity"):
        claim(cfg)


def test_ipv6_listen_matches_its_peer_ids(tmp_path) -> None:
    cfg = config(tmp_path, "[::1]:7001")
    store_peer(cfg, "a@[::1]:7001")
    claim(cfg).release()


def test_secret_files_must_be_private(tmp_path) -> None:
    path = tmp_path / "secret"
    write_private(path, "s\n")
    assert os.stat(path).st_mode & 0o777 == 0o600
    check_private(path, "node.cookie_file")
    for mode, how in ((0o640, "readable"), (0o604, "readable"), (0o620, "writable"),
                      (0o602, "writable"), (0o644, "readable")):
        os.chmod(path, mode)
        with pytest.raises(ConfigError, match=rf"node.cookie_file {path} is {how} by group "
                                              rf"or others \(mode 0{mode:o}\): run chmod 600 "
                                              rf"{path}$"):
            check_private(path, "node.cookie_file")
    os.chmod(path, 0o711)  # execute bits alone leak nothing
    check_private(path, "node.cookie_file")
    os.chmod(path, 0o400)
    check_private(path, "node.cookie_file")
    write_private(path, "again\n")  # an existing file is made private too
    assert os.stat(path).st_mode & 0o777 == 0o600 and path.read_text() == "again\n"


def test_the_readme_shows_the_messages_as_the_node_prints_them(tmp_path) -> None:
    """The three lines of README "Running nodes" are the real messages, paths aside."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    shown = [line.strip() for line in readme.splitlines()
             if line.strip().startswith("zraft node: ")]
    cookie, lock, moved = shown[:3]
    secret = tmp_path / "cookie"
    secret.write_text("s\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as exc:
        check_private(secret, "node.cookie_file")
    assert cookie.replace("/etc/zraft/cookie", str(secret)) == f"zraft node: {exc.value}"
    data = tmp_path / "data"
    cfg = NodeConfig(listen="10.0.0.5:7001", cookie="c", log_dir=str(data),
                     snapshot_dir=str(data))
    data.mkdir()
    held = claim(cfg)
    with pytest.raises(ConfigError) as exc:
        claim(cfg)
    held.release()
    expected = lock.replace("/var/lib/zraft/data", str(data)).replace("4242", str(os.getpid()))
    assert expected == f"zraft node: {exc.value}"
    with pytest.raises(ConfigError) as exc:
        claim(NodeConfig(listen="10.0.0.6:7001", cookie="c", log_dir=str(data),
                         snapshot_dir=str(data)))
    assert moved.replace("/var/lib/zraft/data", str(data)) == f"zraft node: {exc.value}"
