"""The determinism checker on the shipped backends, and on planted backends that each break
one rule: every one is caught, with the first command that shows it named in the report."""

from __future__ import annotations

import datetime
import os
import pickle
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.testing import check_backend_planted as planted
from tests.testing import example_commands
from zraft.fsm import commands as cmd
from zraft.fsm.codec import packb, unpackb
from zraft.fsm.registry import BUILTIN_BACKENDS
from zraft.testing.check_backend import DEFAULTS, CheckFailed, check, query, write
from zraft.testing.check_backend.__main__ import main
from zraft.testing.check_backend.replica import pickle_at
from zraft.testing.check_backend.scenario import build, describe_entry, generate
from zraft.testing.check_backend.shipped import SHIPPED

ROOT = Path(__file__).resolve().parents[2]

STEPS = 120


def _failure(cls: type, *, processes: bool = False, seeds: int = 3) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        check(cls, planted.kv_commands, seeds=seeds, steps=STEPS, processes=processes)
    return info.value


def _payload(entry: Any) -> Any:
    """The user's command in a log entry (plain, session or temporary write), else None."""
    if entry.data is None:
        return None
    raw = unpackb(entry.data)
    if raw[0] == cmd.WRITE:
        return raw[1]
    if raw[0] == cmd.SESSION_WRITE:
        return raw[5]
    return None


def _first_entry(seed: int, op: str) -> Any:
    """The first log entry of the scenario of ``seed`` that carries the command ``op``."""
    scenario = build(generate(planted.kv_commands, STEPS, seed), seed)
    for entry in scenario.entries:
        payload = _payload(entry)
        if isinstance(payload, list) and payload[:1] == [op]:
            return entry
    raise AssertionError(f"no {op} in the scenario of seed {seed}")


# ----------------------------------------------------------------- what passes


@pytest.mark.parametrize("name", sorted(BUILTIN_BACKENDS))
def test_every_shipped_backend_passes_in_replica_processes(name: str) -> None:
    # a shipped backend needs a default generator (generators.DEFAULTS) to be checked here
    assert BUILTIN_BACKENDS[name] in DEFAULTS, f"no command generator for {name}"
    summary = check(name, seeds=2, steps=150)
    assert summary.mode == "processes" and summary.notes == []
    # the run did exercise every path it claims to: snapshots, restores, crashes, installs
    for what in ("snapshots", "restores", "crashes", "installs", "queries"):
        assert summary.totals[what] > 0, (what, summary)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_ready_made_object_passes(name: str) -> None:
    summary = check(name, seeds=2, steps=120, processes=False)
    assert summary.notes == []
    for what in ("snapshots", "restores", "crashes", "queries"):
        assert summary.totals[what] > 0, (what, summary)


@pytest.mark.parametrize("spec, commands", [
    ("examples.jobqueue:JobQueue", example_commands.jobqueue_commands),
    ("inventory:Inventory", example_commands.inventory_commands),
])
def test_the_example_apps_pass(spec: str, commands: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "objects"))
    summary = check(spec, commands, seeds=3, steps=150, processes=False)
    assert summary.notes == []
    assert summary.totals["restores"] > 0 and summary.totals["crashes"] > 0


def test_a_correct_backend_passes() -> None:
    summary = check(planted.KV, planted.kv_commands, seeds=2, steps=STEPS, processes=False,
                    state_of=planted.kv_state)
    assert summary.mode == "inline"
    assert summary.totals["restores"] > 0 and summary.totals["installs"] > 0


# ----------------------------------------------------------------- planted defects


def test_randomness_in_apply_is_caught_at_the_first_command_that_uses_it() -> None:
    exc = _failure(planted.RandomKV)
    first = _first_entry(exc.seed, "add")
    assert exc.kind == "answers_differ" and exc.index == first.index
    assert f"the replicas answered {describe_entry(first)} differently" in exc.report
    assert "random.randint x1" in exc.report


def test_set_iteration_order_is_caught_with_per_replica_hash_seeds() -> None:
    exc = _failure(planted.SetOrderKV, processes=True)
    assert exc.kind == "answers_differ"
    assert "['pop'] differently" in exc.report
    assert "PYTHONHASHSEED=101" in exc.report


@pytest.mark.parametrize("cls, read", [(planted.ClockKV, "datetime.now x1"),
                                       (planted.ImportedClockKV, "time.time x1")])
def test_reading_the_clock_is_caught_at_the_first_command_that_reads_it(
        cls: type, read: str) -> None:
    # processes: ImportedClockKV's module bound the real time.time when this test imported
    # it; only a replica process (fakes installed before the import) sees that read
    exc = _failure(cls, processes=True, seeds=1)
    first = _first_entry(exc.seed, "set")
    assert exc.kind == "answers_differ" and exc.index == first.index
    assert f"the replicas answered {describe_entry(first)} differently" in exc.report
    assert read in exc.report


def test_randomness_kept_in_the_state_is_narrowed_to_the_entry_that_wrote_it() -> None:
    # no answer differs, only the states: the checker reruns the seed comparing them after
    # every entry, so the report names the first set, not a checkpoint a few entries later
    exc = _failure(planted.HiddenRandomKV)
    first = _first_entry(exc.seed, "set")
    assert exc.kind == "states_differ" and exc.index == first.index
    assert f"The entry that made them differ:\n  {describe_entry(first)}" in exc.report
    assert "comparing the states after every entry" in exc.report


def test_a_query_that_changes_the_state_is_caught() -> None:
    exc = _failure(planted.QueryWritesKV)
    assert exc.kind == "states_differ"
    assert "and the queries ['get'," in exc.report


def test_a_clock_read_in_the_constructor_is_caught() -> None:
    # backends are made in the replica's surroundings too: the fake clocks differ by months
    exc = _failure(planted.BornAtKV)
    first = _first_entry(exc.seed, "del")
    assert exc.kind == "answers_differ" and exc.index == first.index


def test_a_snapshot_that_loses_data_is_caught() -> None:
    exc = _failure(planted.LossyKV)
    assert exc.kind == "snapshot_roundtrip"
    assert f"restore(snapshot(s)) != s: after restoring the snapshot at entry {exc.index}" \
        in exc.report


def test_a_snapshot_that_forgets_owners_makes_a_later_expiry_diverge() -> None:
    exc = _failure(planted.ForgetfulOwnersKV)
    assert "expiry check of session" in exc.report


def test_dict_order_changed_by_a_restore_is_caught() -> None:
    exc = _failure(planted.DictOrderKV)
    assert exc.kind == "snapshot_roundtrip" and "query ['keys'] answers" in exc.report


def test_a_mutated_command_is_caught_at_the_first_write() -> None:
    exc = _failure(planted.MutatingKV)
    scenario = build(generate(planted.kv_commands, STEPS, exc.seed), exc.seed)
    first = next(e for e in scenario.entries if _payload(e) is not None)
    assert exc.kind == "mutated_input" and exc.index == first.index
    assert f"at {describe_entry(first)}" in exc.report


def test_a_pickled_snapshot_is_refused() -> None:
    exc = _failure(planted.PickleKV)
    assert exc.kind == "pickle_snapshot" and "data/state is a pickle" in exc.report


def test_a_pickle_inside_a_msgpack_snapshot_is_refused() -> None:
    exc = _failure(planted.EmbeddedPickleKV)
    assert exc.kind == "pickle_snapshot" and "data/state holds a pickle at byte" in exc.report


def test_pickle_detection_has_no_false_positive_on_binary_data() -> None:
    rng = random.Random(7)
    assert pickle_at(rng.randbytes(1 << 20)) is None
    # msgpack of binary values full of pickle-like bytes (PROTO 4, FRAME, STOP)
    values = [bytes(rng.choice((0x80, 0x04, 0x95, 0x2E, 0x4B, rng.randrange(256)))
                    for _ in range(rng.randrange(1, 64))) for _ in range(2000)]
    assert pickle_at(packb(values)) is None
    assert pickle_at(b"\x80\x04" + bytes(100)) is None
    assert pickle_at(pickle.dumps({"a": [1, 2]})) == 0
    assert pickle_at(b"\x93\xa1x\xc4" + pickle.dumps((1, "b"))) == 4


def test_an_async_snapshot_job_reading_live_state_is_caught() -> None:
    exc = _failure(planted.LiveAsyncSnapshotKV)
    assert exc.kind == "async_snapshot_live"


def test_a_result_msgpack_cannot_encode_is_caught() -> None:
    exc = _failure(planted.SetResultKV)
    assert exc.kind == "not_msgpack" and "query ['members']" in exc.report


def test_a_result_that_is_live_state_is_caught() -> None:
    exc = _failure(planted.LiveResultKV)
    assert exc.kind == "live_reference"


def test_the_peer_id_in_the_state_is_caught() -> None:
    exc = _failure(planted.PeerIdKV)
    first = _first_entry(exc.seed, "del")
    assert exc.kind == "answers_differ" and exc.index == first.index
    assert "n1@127.0.0.1:9001" in exc.report


# ----------------------------------------------------------------- non-canonical snapshots


def test_unsorted_snapshot_bytes_are_reported_unless_state_of_describes_the_state() -> None:
    # the same state written in a set's iteration order: bytes differ between replicas
    exc = _failure(planted.UnsortedSnapshotKV, processes=True, seeds=2)
    assert exc.kind == "states_differ" and "pass state_of" in exc.report
    summary = check(planted.UnsortedSnapshotKV, planted.kv_commands, seeds=1, steps=STEPS,
                    state_of=planted.kv_state)
    assert summary.mode == "processes"


# ----------------------------------------------------------------- the command line

PLANTED = "tests.testing.check_backend_planted"


def test_the_command_line_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--commands", f"{PLANTED}:kv_commands", "--seeds", "2", "--steps", "60",
            "--inline"]
    path = list(sys.path)
    assert main([f"{PLANTED}:KV", *args]) == 0
    assert "2 seeds x 60 steps passed" in capsys.readouterr().out
    assert sys.path == path
    assert main([f"{PLANTED}:RandomKV", *args]) == 1
    out = capsys.readouterr().out
    assert "failed at scenario seed 0" in out and "differently" in out
    replay = (f"Replay: python -m zraft.testing.check_backend {PLANTED}:RandomKV --commands "
              f"{PLANTED}:kv_commands --inline --seed 0 --seeds 1 --steps 60")
    assert replay in out
    assert main(["no_such_module_zz:X", *args]) == 2
    assert "ModuleNotFoundError" in capsys.readouterr().err
    assert main([f"{PLANTED}:NotABackend", *args]) == 2  # loaded as a node loads it
    assert "does not implement the Backend protocol" in capsys.readouterr().err
    assert main([f"{PLANTED}:KV"]) == 2  # no generator: it says what to pass
    assert "no command generator" in capsys.readouterr().err


# ----------------------------------------------------------------- hypothesis strategies


def test_a_hypothesis_strategy_drives_the_check_and_shrinks_within_its_budget() -> None:
    from hypothesis import strategies as st

    ops = st.one_of(
        st.builds(lambda k, v: write(["add", k, v]), st.sampled_from("abc"), st.integers(1, 3)),
        st.builds(lambda k: query(["get", k]), st.sampled_from("abc")))
    assert check(planted.KV, ops, seeds=2, steps=12, processes=False).mode == "inline"
    with pytest.raises(CheckFailed) as info:
        check(planted.RandomKV, ops, seeds=2, steps=12, processes=False, shrink_seconds=1)
    assert info.value.kind == "answers_differ" and "plain write ['add'," in info.value.report


# ----------------------------------------------------------------- the README's examples

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README[README.index("## Checking your state machine"):
                 README.index("## Testing and evidence")]


def test_the_readme_pytest_example_runs() -> None:
    block = re.search(r"```python\n(.*?)```", SECTION, re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    namespace["test_my_backend_is_deterministic"]()


def test_the_readme_command_for_the_dict_backend_runs(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    line = re.search(r"```sh\n(.*?)\n", SECTION, re.S)
    assert line is not None
    argv = shlex.split(line.group(1).split(" #")[0])
    assert argv[:3] == [".venv/bin/python", "-m", "zraft.testing.check_backend"]
    assert main(argv[3:]) == 0
    assert "5 seeds x 200 steps passed" in capsys.readouterr().out


def test_keys_that_fire_watches_may_come_in_any_order() -> None:
    # seed 4 expires a session owning two keys, listed in another order by each replica
    summary = check(planted.UnorderedExpiryKV, planted.kv_commands, seed=4, seeds=1,
                    steps=STEPS, state_of=planted.kv_state)
    assert summary.mode == "processes"


# ----------------------------------------------------------------- the checker's own hygiene


def _worker_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "zraft.testing.check_backend.worker" in " ".join(p.cmdline())]


def test_a_replica_process_that_exits_is_reported_and_none_is_left_behind() -> None:
    exc = _failure(planted.ExitKV, processes=True, seeds=1)
    assert exc.kind == "replica_died" and "it exited; exit code 3" in exc.report
    assert _worker_children() == []


def test_a_backend_call_that_never_returns_stops_the_replica_after_the_timeout() -> None:
    with pytest.raises(CheckFailed) as info:
        check(planted.HangKV, planted.kv_commands, seeds=1, steps=STEPS, timeout=3)
    assert info.value.kind == "replica_died" and "no answer in 3 s" in info.value.report
    assert "HangKV: pop hangs now" in info.value.report  # its stderr: stopped in the hang
    assert _worker_children() == []


def test_the_fake_clocks_and_random_are_put_back() -> None:
    real = (time.time, time.monotonic, time.perf_counter, random.random, random.randint,
            os.urandom, datetime.datetime, datetime.date)
    check(planted.KV, planted.kv_commands, seeds=1, steps=40, processes=False)
    _failure(planted.RandomKV)
    assert main([f"{PLANTED}:KV", "--commands", f"{PLANTED}:kv_commands", "--seeds", "1",
                 "--steps", "20", "--inline"]) == 0
    assert (time.time, time.monotonic, time.perf_counter, random.random, random.randint,
            os.urandom, datetime.datetime, datetime.date) == real


def test_the_command_line_imports_the_backend_from_python_path(tmp_path: Path) -> None:
    # from another directory, with nothing of the tests on the path: only --python-path
    # lets this process and the replica processes import the module
    here = str(Path(__file__).parent)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "zraft.testing.check_backend", "check_backend_planted:KV",
         "--python-path", here, "--commands", "check_backend_planted:kv_commands",
         "--seeds", "1", "--steps", "60"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 seeds x 60 steps passed" in proc.stdout and "(processes)" in proc.stdout


def test_a_class_defined_in_a_test_runs_inline_and_the_summary_says_so() -> None:
    class Local(planted.KV):
        pass

    summary = check(Local, planted.kv_commands, seeds=1, steps=40)
    assert summary.mode == "inline"
    assert "set and str-hash order was not varied" in str(summary)
    with pytest.raises(ValueError, match="must be importable by name"):
        check(Local, planted.kv_commands, seeds=1, steps=40, processes=True)
