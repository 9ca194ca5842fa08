"""Ctrl-C (SIGINT) and SIGTERM: the run stops at the end of its current chunk with a checkpoint.

SIGTERM is what `timeout`, docker, Slurm and systemd send; a user cannot tell it from Ctrl-C, so
both are handled alike. While the training loop runs (`defer(True)`), the first signal is only
noted; the loop sees it at its next chunk boundary (a few milliseconds later, a state every
checkpoint is taken at), saves a checkpoint and raises `Interrupted` / `Terminated` with a
one-line message. A second signal, or one outside the loop (start-up, wrap-up), raises at once.
`cartpole.main` turns them into that line and exit code 130 (SIGINT) or 143 (SIGTERM), the
shell's codes for those signals.

Installed by the command line only (`install`): a library caller (the sweep's trials, tests)
keeps Python's own handling.
"""
from __future__ import annotations

import signal

EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM. A KeyboardInterrupt, so every clean-up written for Ctrl-C runs."""


_pending: int | None = None
_deferring = False


def exception_for(signum: int, message: str = "") -> KeyboardInterrupt:
    kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    return kind(message) if message else kind()


def exit_code(e: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED


def signal_name(e: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C (SIGINT)"


def _handler(signum: int, frame: object) -> None:
    global _pending
    if _deferring and _pending is None:
        _pending = signum
        return
    raise exception_for(signum)


def install() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. started with nohup or `&`
            signal.signal(sig, _handler)


def pending() -> int | None:
    """The signal noted while deferring, if any."""
    return _pending


def defer(on: bool) -> None:
    """From `defer(True)` until `defer(False)`, a first signal is noted (see `pending`) instead
    of raised; turning it on forgets an older one."""
    global _deferring, _pending
    _deferring = on
    if on:
        _pending = None
