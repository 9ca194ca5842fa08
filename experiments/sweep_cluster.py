"""What a sweep must know about its Ray cluster that Tune does not tell it.

Tune waits, silently and forever, for resources that may never come: a trial that no node can fit
(a head started with 0 CPUs and no worker yet), or the rest of a sweep after its only worker
node died. And when its scheduler (ASHA) stops a trial, Tune ends the trial's process without
waiting for the trial to write its summary or send its files home. This module holds the answers,
as plain Python that sweep.py wires into Ray and Tune:

* `no_fit_line` - at start-up, one line when no node of the cluster can ever run a trial;
* `Watch` - while the sweep runs: says when trials have waited for resources with nothing
  running, and decides to end the sweep when no live node can run a trial any more;
* `StopBoard` - the scheduler's stop decisions, relayed to the trials (an actor on the launching
  machine), so that a stopped trial ends *itself*: the trainer wraps up as at a budget, the files
  go home, and only then does the trial's process end;
* `quiet_join` and `auth_hint` - joining a cluster without Ray's native warnings on the terminal,
  and the one line for a cluster that wants a token.

Nothing here imports Ray.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from common.tf_import import native_stderr_captured

#: The spec's resource names (sweep_spec: cpu, gpu) as Ray names them; others pass unchanged.
RAY_NAMES = {"cpu": "CPU", "gpu": "GPU"}


def ray_request(resources: dict[str, float]) -> dict[str, float]:
    """A trial's resources_per_trial in Ray's names, without zero entries."""
    return {RAY_NAMES.get(k, k): float(v) for k, v in resources.items() if v}


def describe(request: dict[str, float]) -> str:
    return " and ".join(f"{v:g} {k}" for k, v in request.items()) or "nothing"


def fits(total: dict[str, float], request: dict[str, float]) -> bool:
    """Whether a node with these total resources can ever run a trial (free or not)."""
    return all(float(total.get(k, 0.0)) >= v for k, v in request.items())


def alive(nodes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live nodes of `ray.nodes()`."""
    return [n for n in nodes if n.get("Alive")]


def address(node: dict[str, Any]) -> str:
    return str(node.get("NodeManagerAddress") or node.get("NodeID", "?")[:8])


def _offer(nodes: list[dict[str, Any]], request: dict[str, float]) -> str:
    """What the live nodes offer of the requested resources: 'at most 0 CPU (1 node)'."""
    most = {k: max((float(n.get("Resources", {}).get(k, 0.0)) for n in nodes), default=0.0)
            for k in request}
    return (f"at most {describe(most)} on one node" if nodes else "no node") + \
        f" ({len(nodes)} node{'s' if len(nodes) != 1 else ''} alive)"


def no_fit_line(nodes: list[dict[str, Any]], request: dict[str, float]) -> str | None:
    """None if some live node can run a trial; else why not, in a few words."""
    live = alive(nodes)
    if any(fits(n.get("Resources", {}), request) for n in live):
        return None
    return f"each trial needs {describe(request)}, and the cluster offers {_offer(live, request)}"


class StopBoard:
    """The trials the scheduler stopped, and why; runs as a small actor on the launching machine.

    The driver writes a stop here before it lets the trial's `tune.report` return, and the trial
    reads it right after, so the trial always sees the decision about the round it reported.
    """

    def __init__(self) -> None:
        self.stopped: dict[str, str] = {}

    def tell(self, name: str, reason: str) -> None:
        self.stopped[name] = reason

    def ask(self, name: str) -> str | None:
        return self.stopped.get(name)


class Watch:
    """Checks the cluster every `every` seconds while a sweep runs (driver side, from Tune's loop).

    `nodes()` returns `ray.nodes()`, `free()` `ray.available_resources()`, `groups()` the
    cluster's placement groups (`ray.util.placement_group_table().values()`). Trials that wait
    for `patience` seconds, with none of the sweep's trials running and a placement group (how
    Tune asks for a trial's resources) not yet granted, get a line, repeated every `repeat`
    seconds while that lasts. Tune calls a trial whose process is still starting "pending" too,
    but its placement group is granted: on a busy machine that start can take longer than the
    patience, and is no reason to speak. When no live node can fit a trial any more, the watch
    says so once and sets `ended`; the sweep then stops Tune, whose waiting would never end.
    """

    def __init__(self, request: dict[str, float], nodes: Callable[[], list[dict[str, Any]]],
                 free: Callable[[], dict[str, float]], groups: Callable[[], Iterable[dict[str, Any]]],
                 say: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic, every: float = 2.0,
                 patience: float = 30.0, repeat: float = 60.0) -> None:
        self.request, self.nodes, self.free, self.groups = request, nodes, free, groups
        self.say, self.clock = say, clock
        self.every, self.patience, self.repeat = every, patience, repeat
        self.last_check = -float("inf")
        self.waiting_since: float | None = None
        self.last_said: float | None = None
        self.ended: str | None = None
        self.seen: dict[str, str] = {}  # node id -> address, every node alive at some check
        self.lost: dict[str, str] = {}  # node id -> address, of those, the ones now dead

    def refresh(self) -> list[dict[str, Any]]:
        """Ask Ray for the nodes and note which of the ones seen before are gone."""
        nodes = self.nodes()
        live = {n["NodeID"]: address(n) for n in alive(nodes)}
        self.seen.update(live)
        self.lost = {i: a for i, a in self.seen.items() if i not in live}
        return nodes

    def check(self, pending: int, running: int) -> None:
        now = self.clock()
        if self.ended or now - self.last_check < self.every:
            return
        self.last_check = now
        nodes = self.refresh()
        why = no_fit_line(nodes, self.request)
        if why is not None and pending + running:
            lost = f"; lost: {', '.join(sorted(set(self.lost.values())))}" if self.lost else ""
            self.ended = f"sweep: no node left that can run a trial ({why}{lost}); ending the sweep"
            self.say(self.ended)
            return
        if not pending or running or not any(g.get("state") == "PENDING" for g in self.groups()):
            # Nothing waits, or something of ours runs, or every resource request was granted
            # (the trials are only starting): not worth a word.
            self.waiting_since = self.last_said = None
            return
        self.waiting_since = self.waiting_since if self.waiting_since is not None else now
        waited = now - self.waiting_since
        if waited >= self.patience and (self.last_said is None or now - self.last_said >= self.repeat):
            self.last_said = now
            live = alive(nodes)
            total = {k: sum(float(n.get("Resources", {}).get(k, 0.0)) for n in live)
                     for k in self.request}
            free = {k: float(self.free().get(k, 0.0)) for k in self.request}
            self.say(f"sweep: {pending} trial{'s' if pending != 1 else ''} waiting {waited:.0f} s for "
                     f"resources, none running (each needs {describe(self.request)}; the cluster "
                     f"has {describe(total)} in all, {describe(free)} free now)")


# ------------------------------------------------------------------------------------------------
# Wiring into Tune (driver side)
# ------------------------------------------------------------------------------------------------
def watch_hooks(tune: Any, watch: Watch) -> tuple[Any, Any]:
    """A Tune callback that runs `watch.check` from Tune's loop, and a stopper that ends the
    whole experiment once the watch has `ended` it."""

    class WatchCluster(tune.Callback):
        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            status = [t.status for t in trials]
            watch.check(pending=status.count("PENDING"), running=status.count("RUNNING"))

    class EndWhenWatchSays(tune.Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return watch.ended is not None

    return WatchCluster(), EndWhenWatchSays()


def relayed_asha(tell: Callable[[Any, str], bool], **asha: Any) -> Any:
    """ASHA whose stop decisions go to the trial (`tell(trial, "asha")` returns True once the
    trial can read it) instead of ending the trial's process, which Tune does without waiting
    for the trial's own clean-up. A stopped trial then ends itself; ASHA is not asked about it
    again. Should the relay fail, Tune's own stop applies."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RelayedASHA(ASHAScheduler):
        def __init__(self) -> None:
            super().__init__(**asha)
            self.relayed: set[str] = set()

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            if trial.trial_id in self.relayed:
                return TrialScheduler.CONTINUE
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision != TrialScheduler.STOP or result.get("final") or not tell(trial, "asha"):
                return decision
            self.relayed.add(trial.trial_id)
            return TrialScheduler.CONTINUE

    return RelayedASHA()


# ------------------------------------------------------------------------------------------------
# Joining a cluster
# ------------------------------------------------------------------------------------------------
#: Ray's driver retries a cluster's GCS once a second this many times by default (20 s of
#: warnings when the cluster refuses our token). The sweep has just seen the port answer, so a
#: few tries are enough; a value the user set is kept.
GCS_TRIES_ENV, GCS_TRIES = "RAY_gcs_server_port_wait_time_s", "5"


@contextlib.contextmanager
def quiet_join() -> Iterator[None]:
    """While the driver joins a cluster: fewer GCS retries, and Ray's native client warnings
    (written straight to file descriptor 2, past Python's logging) kept off the terminal. The
    sweep's own one line says what went wrong; Ray's records on the nodes keep the details."""
    set_tries = GCS_TRIES_ENV not in os.environ
    if set_tries:
        os.environ[GCS_TRIES_ENV] = GCS_TRIES
    try:
        with native_stderr_captured():
            yield
    finally:
        if set_tries:
            os.environ.pop(GCS_TRIES_ENV, None)


def _local_token() -> str | None:
    """Where this machine holds a Ray token, if anywhere (what Ray itself would read)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return path if Path(path).is_file() else None


def auth_hint(where: str) -> str:
    """The one line for a cluster that refused us for want of the right token."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return (f"{where} refused this machine's Ray token: use the head's (its ~/.ray/auth_token, "
                "copied here or given as RAY_AUTH_TOKEN)")
    token = _local_token()
    if token:
        # Ray sends a token to a named address only when told to, even one it has at hand.
        return (f"{where} requires token authentication: set RAY_AUTH_MODE=token to send this "
                f"machine's token ({token}; it must be the head's)")
    return (f"{where} requires token authentication: copy the head's ~/.ray/auth_token to this "
            "machine (or set RAY_AUTH_TOKEN) and set RAY_AUTH_MODE=token")
