"""Argument checks of the public client API, done before anything is sent.

Rule: every timeout a caller gives (call timeouts, session timeouts, fail and election
timeouts of the leader tracking) is a real number of seconds, finite, > 0 and at most
``MAX_TIMEOUT``; anything else raises ``ValueError`` naming the argument. Why: ``inf``
used to fail with OverflowError after the write had been sent (and applied), ``nan`` made
every deadline comparison false (sometimes a success, sometimes a timeout), and a negative
or zero timeout could only ever time out.
"""

from __future__ import annotations

import argparse
import math
import numbers
from typing import Any

MAX_TIMEOUT = 86_400.0  # one day: longer than any call or session should wait


def check_timeout(value: Any, name: str = "timeout") -> float:
    """``value`` as a float if it is a valid timeout, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number of seconds, not {type(value).__name__[:40]}")
    try:
        seconds = float(value)
    except (OverflowError, ValueError):  # an int too large for a float
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT:  # NaN fails every comparison
        raise ValueError(f"{name} must be finite, > 0 and <= {MAX_TIMEOUT:.0f} seconds, "
                         f"got {_brief(value)}")
    return seconds


def check_optional_timeout(value: Any, name: str) -> float | None:
    """As ``check_timeout``, but None (meaning "the default") is accepted as it is."""
    return None if value is None else check_timeout(value, name)


def timeout_arg(text: str) -> float:
    """argparse ``type=`` of a seconds option: as ``check_timeout`` (else usage, exit 2)."""
    try:
        return check_timeout(float(text), "the value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _brief(value: Any) -> str:
    if isinstance(value, numbers.Integral) and abs(int(value)).bit_length() > 64:
        return f"an int of {abs(int(value)).bit_length()} bits"  # repr could be huge
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
