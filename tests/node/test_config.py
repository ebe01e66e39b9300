"""Node configuration: defaults are zraft_lib's, bad input gives one clear line."""

from __future__ import annotations

import pytest

from zraft.config import ConfigError, NodeConfig, RaftConfig, ensure_dirs, load_config, parse_config


def write(tmp_path, text: str):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_defaults_are_zraft_lib_defaults() -> None:
    raft = RaftConfig()
    assert raft.election_timeout == 500
    assert raft.effective_request_timeout == 1000
    assert raft.max_segment_size == 10485760
    assert raft.max_log_count == 1000
    assert raft.snapshot_listener_port == 0
    assert raft.snapshot_backup is False
    assert raft.election_ticks == 10


def test_full_file_round_trip(tmp_path) -> None:
    cfg = load_config(write(tmp_path, """
[node]
listen = "127.0.0.1:7101"
cookie = "secret"
backends = ["dict"]
log_dir = "d1"
[raft]
election_timeout = 300
max_log_count = 50
snapshot_log_ratio = 0
snapshot_backup = true
[logging]
level = "debug"
count = 2
"""))
    assert cfg.port == 7101 and cfg.host == "127.0.0.1"
    assert cfg.raft.election_timeout == 300 and cfg.raft.effective_request_timeout == 600
    assert cfg.raft.snapshot_backup is True and cfg.logging.count == 2
    assert cfg.raft.snapshot_log_ratio == 0.0 and isinstance(cfg.raft.snapshot_log_ratio, float)
    assert cfg.resolved_cookie() == b"secret"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[node]\ncookie="c"\nbogus = 1\n', "unknown key 'node.bogus'"),
        ('[raft]\nelection_timeout = "fast"\n[node]\ncookie="c"\n',
         "raft.election_timeout must be an integer"),
        ('[node]\ncookie="c"\nlisten = "nowhere"\n', "node.listen"),
        ('[node]\nlisten = "127.0.0.1:7000"\n', "no cookie"),
        ('[sundry]\nx=1\n', "unknown section 'sundry'"),
        ('[node\n', "config file"),
        ('[raft]\nsnapshot_backup = 1\n[node]\ncookie="c"\n', "must be true or false"),
        ('[raft]\nsnapshot_log_ratio = "x"\n[node]\ncookie="c"\n', "must be a number"),
        ('[raft]\nsnapshot_log_ratio = -1\n[node]\ncookie="c"\n', "between 0 and 1000"),
        ('[node]\ncookie="c"\nmax_buffered_bytes = 1000\n', "node.max_buffered_bytes must be >="),
        ('[node]\ncookie="c"\nmax_buffered_bytes = "1G"\n', "must be an integer"),
        ('[node]\ncookie="c"\nlisten = "0.0.0.0:7000"\n', "not a wildcard"),
        ('[node]\ncookie="c"\nlisten = "[::]:7000"\n', "not a wildcard"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_cookie_file_and_overrides(tmp_path) -> None:
    (tmp_path / "cookie").write_text("from-file\n")
    cfg = load_config(write(tmp_path, f'[node]\ncookie_file = "{tmp_path / "cookie"}"\n'),
                      listen="127.0.0.1:7200")
    assert cfg.resolved_cookie() == b"from-file" and cfg.port == 7200


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/node.toml")


def test_unwritable_dir_is_reported(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = parse_config({"node": {"cookie": "c", "log_dir": str(blocker / "sub")}})
    with pytest.raises(ConfigError, match=r"node\.log_dir"):
        ensure_dirs(cfg)


def test_node_config_is_frozen() -> None:
    cfg = NodeConfig(cookie="c")
    with pytest.raises(AttributeError):
        cfg.listen = "x"  # type: ignore[misc]


def test_entry_and_batch_sizes_fit_a_frame() -> None:
    """An AppendEntries holds a batch (<= max_batch_bytes) or one entry (<= max_entry_size
    + its fields): both must fit the frame limit with the message's own fields."""
    from zraft.config import FRAME_ENVELOPE, MAX_FRAME_SIZE
    from zraft.core.entries import ENTRY_OVERHEAD

    assert RaftConfig().max_entry_size == 8 * 1024 * 1024
    room = MAX_FRAME_SIZE - FRAME_ENVELOPE
    ok = parse_config({"node": {"cookie": "c"}, "raft": {
        "max_entry_size": room - ENTRY_OVERHEAD, "max_batch_bytes": room}})
    assert ok.raft.max_entry_size == room - ENTRY_OVERHEAD
    for raft, key in (({"max_entry_size": room - ENTRY_OVERHEAD + 1}, "raft.max_entry_size"),
                      ({"max_entry_size": MAX_FRAME_SIZE}, "raft.max_entry_size"),
                      ({"max_entry_size": 1023}, "raft.max_entry_size"),
                      ({"max_batch_bytes": room + 1}, "raft.max_batch_bytes")):
        with pytest.raises(ConfigError) as info:
            parse_config({"node": {"cookie": "c"}, "raft": raft})
        assert str(info.value).startswith(key), info.value


def test_relative_paths_resolve_against_the_config_files_directory(tmp_path,
                                                                   monkeypatch) -> None:
    """Not against the cwd: a node started from anywhere uses the same files. The defaults
    ("data", "log") too; command-line overrides stay relative to the cwd."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "cookie").write_text("c\n")
    config = etc / "node.toml"
    config.write_text('[node]\ncookie_file = "cookie"\nlog_dir = "d/log"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config)
    assert cfg.cookie_file == str(etc / "cookie") and cfg.resolved_cookie() == b"c"
    assert cfg.log_dir == str(etc / "d" / "log")
    assert cfg.snapshot_dir == str(etc / "data") and cfg.logging.dir == str(etc / "log")
    absolute = load_config(write(tmp_path, f'[node]\ncookie = "c"\nlog_dir = "{tmp_path}"\n'))
    assert absolute.log_dir == str(tmp_path)
    assert load_config(config, log_dir="here").log_dir == "here"


def test_fault_injection_is_off_by_default(tmp_path) -> None:
    assert NodeConfig().fault_injection is False
    cfg = load_config(write(tmp_path, '[node]\ncookie = "c"\nfault_injection = true\n'))
    assert cfg.fault_injection is True


@pytest.mark.parametrize(
    ("listen", "snapshot_addr", "bind", "advertised"),
    [
        # the default follows node.listen: a name binds (resolved) and is advertised as is
        ("node1.example.com:7000", "", "node1.example.com", "node1.example.com"),
        ("10.0.0.5:7000", "", "10.0.0.5", "10.0.0.5"),
        ("[fd00::5]:7000", "", "fd00::5", "fd00::5"),
        # a wildcard binds everywhere and advertises the listen host, never a guess
        ("node1.example.com:7000", "0.0.0.0", "0.0.0.0", "node1.example.com"),
        ("node1:7000", "::", "::", "node1"),
        # an explicit address is both
        ("node1:7000", "10.0.0.9", "10.0.0.9", "10.0.0.9"),
    ],
)
def test_snapshot_receiver_advertises_an_address_other_hosts_can_dial(
        listen: str, snapshot_addr: str, bind: str, advertised: str) -> None:
    """The leader dials what the follower advertises: with the old default (127.0.0.1) a
    node on another host was told to dial its own loopback, and a wildcard advertised
    whatever this machine's host name resolved to (127.0.1.1 on Debian, nothing in a
    container's or namespace's own hosts file)."""
    cfg = parse_config({"node": {"listen": listen, "cookie": "c"},
                        "raft": {"snapshot_listener_addr": snapshot_addr}})
    assert cfg.snapshot_endpoint() == (bind, advertised)
    assert parse_config({"node": {"listen": listen, "cookie": "c"}}).snapshot_endpoint()[1] \
        == listen.rpartition(":")[0].strip("[]")
