"""Scripted faults shared by the Hue bridge and Alexa GraphQL simulators.

A fault script is a list of steps separated by spaces, each ``kind``, ``kind*N`` or
``kind(key=value,...)*N``, optionally prefixed by a target (``hue.`` or ``aqm.``) when
one script drives both simulators::

    hue.http_503*2 hue.ok*3 hue.rate_limit(retry_after=2) aqm.unauthenticated*3

``ok`` is an explicit fault-free answer (to space faults out). ``random(seed=1,rate=0.3)``
makes every otherwise fault-free request fail with probability ``rate``, picking a kind
from the simulator's list, reproducibly for one seed. Which kinds exist is the
simulator's business: the plan only hands out names and parameters.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

_STEP = re.compile(
    r"^(?:(?P<target>[a-z_]+)\.)?(?P<kind>[a-z0-9_]+)(?:\((?P<params>[^)]*)\))?(?:\*(?P<times>\d+))?$"
)


@dataclass(frozen=True)
class Fault:
    """One fault to inject into one answer. ``params`` are numbers or strings from the script."""

    kind: str
    params: dict[str, float | str] = field(default_factory=dict)

    def number(self, name: str, default: float) -> float:
        value = self.params.get(name, default)
        return float(value)


OK = Fault("ok")


def _parse_value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def parse_step(step: str) -> tuple[str | None, Fault, int]:
    """Parse one script step into (target, fault, times); raise ValueError on a malformed step."""
    match = _STEP.match(step.strip())
    if not match:
        raise ValueError(f"bad fault step {step!r}: expected kind, kind*N or kind(key=value)*N")
    params: dict[str, float | str] = {}
    if match["params"]:
        for pair in match["params"].split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"bad fault parameter {pair!r} in {step!r}: expected key=value")
            params[key.strip()] = _parse_value(value.strip())
    times = int(match["times"]) if match["times"] else 1
    return match["target"], Fault(match["kind"], params), times


class FaultPlan:
    """Decides the fault for each request a simulator answers. Thread-safe.

    Precedence: a sticky fault (set until cleared, e.g. a revoked key), then queued
    one-shot faults in order, then the random mix, then no fault.
    """

    def __init__(self, random_kinds: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._sticky: Fault | None = None
        self._random_kinds = tuple(random_kinds)
        self._rng: random.Random | None = None
        self._rate = 0.0
        self.injected: dict[str, int] = {}
        self.arrivals: deque[tuple[float, str]] = deque(maxlen=100_000)
        """(time.monotonic() of arrival, fault kind or "ok") for every request decided."""
        self.partners: dict[str, FaultPlan] = {}
        """Plans of the other simulators in this process (``homepoll simulate``), by target:
        a script posted to one port also gives them their steps."""

    def queue(self, kind: str, times: int = 1, **params: float | str) -> None:
        """The next ``times`` requests (after those already queued) get this fault."""
        with self._lock:
            self._queue.extend([Fault(kind, dict(params))] * times)

    def set_sticky(self, kind: str | None, **params: float | str) -> None:
        """Every request gets this fault until called again with None."""
        with self._lock:
            self._sticky = Fault(kind, dict(params)) if kind else None

    def set_random(self, seed: int, rate: float, kinds: Iterable[str] | None = None) -> None:
        """Fail a ``rate`` fraction of otherwise fault-free requests, reproducibly for ``seed``."""
        with self._lock:
            self._rng = random.Random(seed)
            self._rate = rate
            if kinds is not None:
                self._random_kinds = tuple(kinds)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._sticky = None
            self._rng = None
            self._rate = 0.0

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def next(self) -> Fault | None:
        """The fault for the request being answered now, or None for a normal answer."""
        with self._lock:
            fault: Fault | None = None
            if self._sticky is not None:
                fault = self._sticky
            elif self._queue:
                fault = self._queue.popleft()
            elif self._rng is not None and self._random_kinds and self._rng.random() < self._rate:
                fault = Fault(self._rng.choice(self._random_kinds))
            if fault is None or fault.kind == "ok":
                self.arrivals.append((time.monotonic(), "ok"))
                return None
            self.arrivals.append((time.monotonic(), fault.kind))
            self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
            return fault

    def apply_script(self, script: str, target: str) -> None:
        """Add the steps of ``script`` meant for ``target`` (unprefixed steps are for everyone);
        partner plans get the steps prefixed with their target."""
        for other, plan in self.partners.items():
            plan._apply_steps(script, other, prefixed_only=True)
        self._apply_steps(script, target, prefixed_only=False)

    def _apply_steps(self, script: str, target: str, *, prefixed_only: bool) -> None:
        for step in script.split():
            step_target, fault, times = parse_step(step)
            if step_target != target and (prefixed_only or step_target is not None):
                continue
            if fault.kind == "random":
                kinds = fault.params.get("kinds")
                self.set_random(
                    int(fault.number("seed", 0)),
                    fault.number("rate", 0.3),
                    str(kinds).split("|") if kinds else None,
                )
            elif fault.kind == "sticky":
                self.set_sticky(str(fault.params.get("kind", "")) or None)
            else:
                self.queue(fault.kind, times, **fault.params)


def all_fault_kinds() -> dict[str, tuple[str, ...]]:
    """Every simulator's fault names by target (imported when asked: the simulators import us)."""
    from homepoll.simulator import aqm_api, hue_bridge

    return {"hue": tuple(hue_bridge.FAULT_KINDS), "aqm": tuple(aqm_api.FAULT_KINDS)}


def validate_script(script: str, known: dict[str, Iterable[str]]) -> list[str]:
    """Problems in ``script``; empty when valid.

    Unprefixed steps must be known to every target in ``known`` (the port's own simulator); a
    step prefixed with another simulator's target is checked against that simulator's names,
    so no port accepts a name nobody knows, nor refuses one meant for the other port.
    """
    problems = []
    everyone = {**all_fault_kinds(), **known}
    for step in script.split():
        try:
            target, fault, _ = parse_step(step)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        kinds = everyone if target else known
        for name in [target] if target else list(known):
            if name not in kinds:
                problems.append(f"unknown fault target {name!r} in {step!r}")
            elif fault.kind not in {*kinds[name], "ok", "random", "sticky"}:
                problems.append(
                    f"unknown fault {fault.kind!r} for {name} in {step!r}; "
                    f"known: {', '.join(sorted(kinds[name]))}"
                )
    return problems


@dataclass(frozen=True)
class Served:
    """A measurement a simulator served in a successful answer, in physical units.

    Tests compare these with what homepoll stored: every one must be there exactly once.
    ``ts`` is unix ms UTC, as homepoll stores it.
    """

    source: str
    device_id: str
    metric: str
    ts: int
    value: float


class ServedLog:
    """Thread-safe record of what a simulator served; de-duplicated by (device, metric, ts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str, str, int], Served] = {}
        self.requests = 0
        self.successes = 0

    def add(self, items: Iterable[Served]) -> None:
        with self._lock:
            for item in items:
                self._items.setdefault((item.source, item.device_id, item.metric, item.ts), item)

    def count_request(self, success: bool) -> None:
        with self._lock:
            self.requests += 1
            self.successes += int(success)

    def snapshot(self) -> list[Served]:
        with self._lock:
            return list(self._items.values())
