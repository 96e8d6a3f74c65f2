"""The fault matrix: every fault kind of both simulators, one at a time, against the real daemon.

For each collector, each fault its simulator can inject is queued alone; the test finds the
poll that met it (by the request's arrival time), checks the outcome and retries against the
taxonomy of the reference, waits for the next good poll (alert files cleared), and moves on.
At the end the invariant holds (every served measurement stored exactly once, nothing else,
integrity ok, no alert left open, daemon alive), and no output anywhere - log at DEBUG, stderr,
status.json, the alert files, the polls table, the CLI - holds the Hue key or a cookie value.
The matrix (fault x collector -> outcome, attempts, alert, lost) goes to the figures.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from homepoll.simulator import aqm_api, hue_bridge
from homepoll.simulator.aqm_api import AqmApiSimulator
from homepoll.simulator.hue_bridge import HueBridgeSimulator
from tests.conftest import Setup, wait_for
from tests.reliability_support import (
    alert_files,
    assert_every_served_stored_once,
    assert_integrity_ok,
    collector_state,
    poll_count,
    record_figures,
)

# fault -> (poll outcome, attempts the poll used, alert raised). Slow answers take 2 s against
# a 1 s attempt timeout; a throttled Hue poll waits rate_limit_delay (0.2 s), which fits the
# deadline; Amazon's throttle is never retried inside the poll (issue 13).
HUE_EXPECTED = {
    "unauthorized": ("auth", 1, True),
    "error_901": ("ok", 2, False),
    "http_503": ("ok", 2, False),
    "rate_limit": ("ok", 2, False),
    "slow": ("timeout", 1, False),
    "reset": ("ok", 2, False),
    "garbage": ("ok", 2, False),
    # transport auto: a redirect to HTTPS makes the next attempt try HTTPS (none there: HTTP)
    "redirect_https": ("ok", 2, False),
    "empty": ("ok", 2, False),
}
AQM_EXPECTED = {
    "http_401": ("auth", 1, True),
    "http_403": ("auth", 1, True),
    "http_407": ("auth", 1, True),
    "signin_redirect": ("auth", 1, True),
    "unauthenticated": ("auth", 1, True),
    "forbidden": ("auth", 1, True),
    "too_many_requests": ("rate_limited", 1, False),
    "http_429": ("rate_limited", 1, False),
    "rate_exceeded": ("rate_limited", 1, False),
    "http_503": ("ok", 2, False),
    "slow": ("timeout", 1, False),
    "empty_endpoints": ("ok", 1, False),
    "unknown_shape": ("permanent", 1, False),
    "property_error": ("ok", 1, False),
    "unreachable": ("ok", 1, False),
    "reset": ("ok", 2, False),
}
ALERTS = {"hue": "ALERT_HUE_AUTH_NEEDED.txt", "amazon_aqm": "ALERT_TOKEN_REFRESH_NEEDED.txt"}


def test_every_fault_kind_of_both_collectors(tmp_path, daemons) -> None:
    assert set(HUE_EXPECTED) == set(hue_bridge.FAULT_KINDS), "a Hue fault kind is not covered"
    assert set(AQM_EXPECTED) == set(aqm_api.FAULT_KINDS), "an AQM fault kind is not covered"
    offset = time.time() - time.monotonic()  # arrival times are monotonic, poll rows wall time
    aqm_order = _alternating(AQM_EXPECTED)
    half = len(aqm_order) // 4 * 2  # each lane gets whole (failing, riding-out) pairs
    # Two daemons (one with both collectors, one with a second Amazon account) so the sixteen
    # Amazon kinds take eight polls, not sixteen.
    with (
        HueBridgeSimulator(update_period=1.0) as hue,
        AqmApiSimulator(update_period=1.0, monitors=2, fahrenheit_monitors=1) as aqm,
        AqmApiSimulator(update_period=1.0, monitors=1, seed=5) as aqm2,
    ):
        lanes = [Setup(tmp_path / "a", hue, aqm), Setup(tmp_path / "b", None, aqm2)]
        running = []
        for setup in lanes:
            setup.write(retry={"rate_limit_delay": 0.2, "max_delay": 0.2})
            running.append(daemons(setup))
        for setup, name in ((lanes[0], "hue"), (lanes[0], "amazon_aqm"), (lanes[1], "amazon_aqm")):
            wait_for(lambda s=setup, n=name: collector_state(s, n).get("state") == "ok")
        matrix: dict[str, dict[str, dict]] = {"hue": {}, "amazon_aqm": {}}
        lock = threading.Lock()

        def run(setup: Setup, name: str, sim, kinds: list[str]) -> None:
            for kind in kinds:
                seen = len(sim.faults.arrivals)
                raised_before = setup.log_text().count(f"ALERT {name}:")
                params = {"seconds": 2} if kind == "slow" else {}
                sim.faults.queue(kind, **params)
                wait_for(lambda: sim.faults.pending() == 0, timeout=10)
                hit = next(
                    t for t, k in list(sim.faults.arrivals)[seen:] if k == kind
                )  # when the faulty answer was asked for
                found = wait_for(lambda t=hit: _poll_around(setup, name, t + offset), timeout=10)
                number, outcome, attempts, error = found
                # status.json is written after the poll's alert handling: wait for this poll.
                state = wait_for(
                    lambda n=number: (s := collector_state(setup, name)).get("polls", 0) >= n and s
                )
                alert = bool(state.get("alert_open"))
                if state["polls"] > number and not alert:
                    # This thread was slow and a later good poll has cleared the alert already:
                    # the CRITICAL line the raise logged still says whether this poll raised it.
                    alert = setup.log_text().count(f"ALERT {name}:") > raised_before
                with lock:
                    matrix[name][kind] = {
                        "outcome": outcome,
                        "attempts": attempts,
                        "alert": alert,
                        "error": error,
                    }

        with ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(run, lanes[0], "hue", hue, _alternating(HUE_EXPECTED)),
                pool.submit(run, lanes[0], "amazon_aqm", aqm, aqm_order[:half]),
                pool.submit(run, lanes[1], "amazon_aqm", aqm2, aqm_order[half:]),
            ]
            for future in futures:
                future.result()
        # Good polls after the last fault: nothing may be left open.
        for setup, name in ((lanes[0], "hue"), (lanes[0], "amazon_aqm"), (lanes[1], "amazon_aqm")):
            wait_for(lambda s=setup, n=name: collector_state(s, n).get("state") == "ok")
            wait_for(lambda s=setup, n=name: not (s.data / ALERTS[n]).exists())
        outputs: dict[str, str] = {}
        counts: dict[str, int] = {}
        polls = 0
        for lane, (setup, daemon, sims) in enumerate(
            zip(lanes, running, [(hue, aqm), (aqm2,)], strict=True)
        ):
            before = sum(len(s.served.snapshot()) for s in sims)
            wait_for(lambda sims=sims, b=before: sum(len(s.served.snapshot()) for s in sims) > b)
            # While running: status, once, readings, check-config.
            outputs.update({f"{lane}:{k}": v for k, v in _outputs(setup, full=lane == 0).items()})
            assert daemon.alive()
            assert daemon.stop() == 0
            outputs[f"{lane}:stderr"] = daemon.stderr()
            outputs.update({f"{lane}:{k}": v for k, v in _data_files(setup).items()})
            assert_integrity_ok(setup.db)
            for key, value in assert_every_served_stored_once(setup, *sims).items():
                counts[key] = counts.get(key, 0) + value
            assert not alert_files(setup)
            polls += poll_count(setup)
        secrets = [hue.key, *aqm.valid_cookies.values(), *aqm2.valid_cookies.values()]

    problems = []
    for name, expected in (("hue", HUE_EXPECTED), ("amazon_aqm", AQM_EXPECTED)):
        for kind, (outcome, attempts, alert) in expected.items():
            got = matrix[name][kind]
            if (got["outcome"], got["attempts"], got["alert"]) != (outcome, attempts, alert):
                problems.append(f"{name} {kind}: expected {(outcome, attempts, alert)}, got {got}")
    assert not problems, "\n".join(problems)

    assert "DEBUG" in outputs["0:homepoll.log"]
    for secret in secrets:
        for where, text in outputs.items():
            assert secret not in text, f"a secret leaked into {where}"
    for lane in (0, 1):
        assert "Traceback" not in outputs[f"{lane}:homepoll.log"]
    record_figures(
        "fault matrix (each kind alone, both collectors)",
        polls=polls,
        faults={f"{name}.{kind}": 1 for name in matrix for kind in matrix[name]},
        matrix=matrix,
        **counts,
    )


def _alternating(expected: dict) -> list[str]:
    """Each failing kind followed by a riding-out one (reused in turn when they run out): never
    two failed polls in a row (no backoff slow-down), and each alert raised by one poll is
    cleared by the next."""
    failing = [k for k, (outcome, _, _) in expected.items() if outcome != "ok"]
    fine = [k for k, (outcome, _, _) in expected.items() if outcome == "ok"]
    order: list[str] = []
    for index, kind in enumerate(failing):
        order += [kind, fine[index % len(fine)]]
    order += fine[len(failing) :]
    return order


def _poll_around(setup: Setup, name: str, when: float) -> tuple[int, str, int, str | None] | None:
    """(number, outcome, attempts, error) of the poll of ``name`` running at wall time ``when``."""
    rows = setup.query(
        "SELECT started_at, duration_ms, outcome, attempts, error FROM polls WHERE collector = ?"
        " ORDER BY started_at",
        name,
    )
    for number, (started, duration, outcome, attempts, error) in enumerate(rows, 1):
        if started / 1000 - 0.05 <= when <= (started + duration) / 1000 + 0.05:
            return number, outcome, attempts, error
    return None


def _outputs(setup: Setup, *, full: bool) -> dict[str, str]:
    commands = [("status", "--json"), ("check-config",)]
    if full:
        commands += [
            ("status",),
            ("readings", "--format", "json"),
            ("readings", "--format", "csv"),
            ("once",),  # stores what it reads: the invariant below counts it too
        ]
    out = {}
    for args in commands:
        result = setup.cli(*args)
        out[" ".join(args)] = result.stdout + result.stderr
    return out


def _data_files(setup: Setup) -> dict[str, str]:
    secrets_files = {"hue_username", "amazon_cookies.json"}
    out = {}
    for path in setup.data.iterdir():
        if path.name in secrets_files or path.name.startswith("readings.db"):
            continue
        out[path.name] = path.read_text(errors="replace")
    out["polls.error"] = repr(setup.query("SELECT error FROM polls"))
    out["sensors"] = repr(setup.query("SELECT * FROM sensors"))
    return out
