"""py-spy profile of one node process while a workload runs, summarised as text.

Rules: ``py-spy record --format raw --threads --gil --nonblocking`` samples the thread that
holds the GIL (the Python work that competes for the interpreter; a thread blocked in recv,
fsync or a lock wait is not sampled) without pausing the process; the raw collapsed stacks
are kept next to the summary. The summary gives the share of samples per thread (names normalised:
uuids, addresses and numbers dropped), per leaf function (self time) and per function
anywhere on the stack (inclusive time), and for the busiest threads their own top leaves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

_NOISE = re.compile(r"\(urn:uuid:[^)]*\)|\d+\.\d+\.\d+\.\d+:\d+|0x[0-9a-f]+|\d+")
_BOOT = ("Thread._bootstrap", "Thread.run ", "Thread._bootstrap_inner", "<module>")


def pyspy_path() -> str | None:
    here = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out_raw: Path, rate: int = 200) -> subprocess.Popen:
    """Start py-spy in the background; ``wait()`` on the result ends it."""
    exe = pyspy_path()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration",
                             str(max(1, round(seconds))), "--rate", str(rate), "--format", "raw",
                             "--threads", "--gil", "--nonblocking", "-o", str(out_raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def thread_kind(name: str) -> str:
    return _NOISE.sub("", name).replace("  ", " ").strip(" -_") or name


def _frame(frame: str) -> str:
    return frame.split(" (")[0] + (" (" + frame.split(" (")[1].split(":")[0] + ")"
                                   if " (" in frame else "")


def summarise(raw_text: str, top: int = 25, seconds: float = 0.0, rate: int = 200) -> str:
    by_thread: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    leaf_by_thread: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for line in raw_text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        head = parts[0]
        name = head.split(": ", 1)[1] if ": " in head else head
        kind = thread_kind(name)
        frames = [_frame(f) for f in parts[1:] if not f.startswith(_BOOT)]
        total += count
        by_thread[kind] += count
        if frames:
            leaf[frames[-1]] += count
            leaf_by_thread[kind][frames[-1]] += count
            for f in set(frames):
                inclusive[f] += count
    if not total:
        return "no samples\n"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    busy = f", GIL held {100 * total / (seconds * rate):.0f}% of the time" if seconds else ""
    out = [f"samples: {total} (threads holding the GIL{busy})", "",
           "by thread (normalised name):"]
    out += [f"  {pct(n)}  {k}" for k, n in by_thread.most_common(top)]
    out += ["", "self time by function (leaf of the stack):"]
    out += [f"  {pct(n)}  {k}" for k, n in leaf.most_common(top)]
    out += ["", "inclusive time by function (anywhere on the stack):"]
    out += [f"  {pct(n)}  {k}" for k, n in inclusive.most_common(top)]
    for kind, _n in by_thread.most_common(6):
        out += ["", f"thread {kind}: top self time"]
        out += [f"  {pct(n)}  {k}" for k, n in leaf_by_thread[kind].most_common(10)]
    return "\n".join(out) + "\n"
