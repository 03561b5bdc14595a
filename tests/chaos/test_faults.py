"""Exactness under faults (issue 10): the scenarios (a)–(i), each on a fresh control plane with 204
runs over 2 pools × 3 queues, six real worker processes and the operator, every client behind
its own Toxiproxy proxy.

In every scenario (`Verdict.check`): processes really executing at once never exceed a pool,
queue or worker limit at any instant (ground truth, from the runs' own start/end lines); no run
executes twice; the admin watch sees no limit exceeded in etcd at any observed moment, no run
bound to two workers at once and one terminal state per run; once the faults are healed every run
is terminal within `DONE_BOUND` seconds and every slot is free again; a Completed run's process ran
to its end; no worker or operator process died unless the scenario killed it; and a run ends
Completed unless the fault may legitimately stop it (say which).

Scenario (a) adds flow control (issue 14): pool alpha admits at most 2 runs per team label at
once (a per-key limit, checked like the others, in processes and in etcd), and pool beta's limit
drops from 3 to 2 for 40 s of every minute (a time window: no more than 2 of its processes execute
once the window has been open for `WINDOW_GRACE` seconds).

Scenario (i) delays the operator's requests on their way to the API server past its write timeout:
a write it gave up on lands seconds later, after the read-back (which then sends it again on the
same version; see controllers/writers.py).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import HEARTBEAT_SECONDS, NAMESPACE, POOL_LIMITS, SETUP_BOUND, Chaos, Verdict
from tests.support.objects import pool
from tests.support.toxiproxy import Proxy, rerolling
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(480)

LEASE_SECONDS = 15
"""client/leadership: a standby may take over after this much silence from the leader."""

Report = Callable[[str], None]
TOXICS = "latency 1000±1000 ms, timeout 3 s (toxicity .05) and reset_peer (toxicity .05) re-drawn every 4 s"


def hold(chaos: Chaos, seconds: float, *, share: float = 1.0) -> None:
    """Keep a fault on for `seconds`, or until `share` of the runs are terminal if that comes first."""
    deadline = time.monotonic() + seconds
    wanted = int(len(chaos.planned) * share)
    while time.monotonic() < deadline and chaos.terminal() < wanted:
        time.sleep(0.2)


@contextlib.contextmanager
def slow_and_flaky(proxy: Proxy) -> Iterator[None]:
    """(a)'s toxics while inside: every response 0–2 s late; every 4 s, ~5 % of the connections stall
    for 3 s and are then closed (writes with an unknown outcome), ~5 % are reset by the peer."""
    proxy.add("latency", "latency", latency=1000, jitter=1000)
    proxy.add("stall", "timeout", timeout=3000, toxicity=0.05)
    proxy.add("reset", "reset_peer", stream="upstream", timeout=200, toxicity=0.05)
    with rerolling(proxy, "stall", "reset", every=4.0):  # longer than a stall: it ends in a close
        yield


def conclude(chaos: Chaos, report: Report) -> Verdict:
    verdict = chaos.finish()
    report(verdict.table())
    return verdict


def test_a_operator_latency_stalls_and_resets_during_a_burst(tmp_path: Path, report: Report) -> None:
    label = "(a) operator↔API latency 0–2 s, 5 % stalls, 5 % resets; a limit per team and a time window"
    with Chaos.up(tmp_path, label, seed=11, flow_control=True) as chaos:
        with slow_and_flaky(chaos.proxy("operator")):
            chaos.burst()
            hold(chaos, 40, share=0.5)
        chaos.fault(f"on the operator: {TOXICS}, until half the runs ended")
        chaos.healed()
        verdict = conclude(chaos, report)
    verdict.check()


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_b_c_a_control_plane_component_restarted_mid_burst(tmp_path: Path, report: Report, component: str) -> None:
    label = "(b) kube-apiserver restarted" if component == "kube-apiserver" else "(c) etcd restarted"
    with Chaos.up(tmp_path, f"{label} mid-burst", seed=12 if component == "kube-apiserver" else 13) as chaos:
        chaos.burst()
        hold(chaos, 60, share=0.25)  # mid-burst: at a quarter of the runs, at the latest after 60 s
        began = time.monotonic()
        chaos.plane.restart_apiserver() if component == "kube-apiserver" else chaos.plane.restart_etcd()
        chaos.fault(f"{component} stopped and started again, down for {time.monotonic() - began:.1f}s")
        chaos.healed()
        verdict = conclude(chaos, report)
    # Every worker loses the API server for longer than 3 × its interval: it may fence its runs.
    verdict.check(any_may_stop=True)


def test_d_one_worker_partitioned_longer_than_three_heartbeats(tmp_path: Path, report: Report) -> None:
    partition = 4 * HEARTBEAT_SECONDS + 2
    long_run = 15.0
    with Chaos.up(tmp_path, f"(d) one worker partitioned {partition}s", seed=14) as chaos:
        chaos.plan(long_runs=long_run)
        chaos.burst()

        def executing_a_long_run() -> str | None:
            assert chaos.watch is not None
            states = chaos.watch.invariants.snapshot()
            for name, (_, _, worker) in chaos.watch.invariants.holders().items():
                if chaos.planned[name].seconds == long_run and states[name] == "Running":
                    return worker
            return None

        # A run that outlives the reclaim: if the worker kept executing it, the slot would be re-granted under it.
        victim = wait_for(executing_a_long_run, timeout=60, interval=0.1, what="a worker executing a long run")
        proxy = chaos.proxy(victim)
        proxy.add("hang-up", "timeout", stream="upstream", timeout=0)
        proxy.add("hang-down", "timeout", stream="downstream", timeout=0)
        chaos.fault(f"{victim}'s requests hang (timeout toxics) for {partition}s, mid {long_run:.0f}s run")
        time.sleep(partition)  # the fault's duration, not an assertion
        chaos.healed()
        verdict = conclude(chaos, report)
    # Its runs may be stopped (fenced by itself, Crashed by the operator); all others complete.
    verdict.check(may_stop={e.run for e in verdict.truth.executions if e.worker == victim})


def test_e_leader_frozen_past_its_lease_with_a_standby(tmp_path: Path, report: Report) -> None:
    freeze = LEASE_SECONDS + 10
    label = f"(e) leader frozen {freeze}s (SIGSTOP), standby present"
    with Chaos.up(tmp_path, label, seed=15, operators=("a", "b")) as chaos:
        leader, standby = chaos.operators["operator-a"], chaos.operators["operator-b"]
        chaos.burst()
        hold(chaos, 60, share=0.2)
        assert leader.process is not None
        leader.process.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        wait_for(standby.healthy, timeout=LEASE_SECONDS + 20, interval=0.5, what="the standby operating")
        took_over = time.monotonic() - frozen
        time.sleep(max(0.0, freeze - (time.monotonic() - frozen)))  # the fault's duration
        leader.process.send_signal(signal.SIGCONT)
        chaos.expected_exits.add("operator-a")  # a leader that lost its Lease may exit
        chaos.fault(f"leader SIGSTOPped for {freeze}s, standby operating after {took_over:.1f}s, then SIGCONT")
        chaos.healed()
        verdict = conclude(chaos, report)
    verdict.check()


def test_f_watch_connections_cut_repeatedly(tmp_path: Path, report: Report) -> None:
    cuts = 8
    with Chaos.up(tmp_path, f"(f) every connection cut {cuts} times", seed=16) as chaos:
        assert chaos.toxiproxy is not None
        proxies = list(chaos.toxiproxy.proxies.values())
        chaos.burst()
        for cut in range(cuts):
            time.sleep(2.5)  # between cuts: the fault's rhythm
            for proxy in proxies:
                if cut % 2 == 0:  # reset the connections that carry anything now (watch events included)
                    proxy.add("cut", "reset_peer", timeout=0)
                else:  # close every connection after 4 KiB more: long watches and large LISTs break
                    proxy.add("cut", "limit_data", bytes=4096)
            time.sleep(0.5 if cut % 2 == 0 else 1.0)
            for proxy in proxies:
                proxy.remove("cut")
        chaos.fault(f"{cuts} cuts 3 s apart on the operator's and every worker's proxy: reset_peer / limit_data 4 KiB")
        chaos.healed()
        verdict = conclude(chaos, report)
    # Every worker's heartbeats fail during cuts: two in a row may make a worker fence itself.
    verdict.check(any_may_stop=True)


def test_g_a_pool_deleted_while_its_runs_execute(tmp_path: Path, report: Report) -> None:
    gone = 4 * HEARTBEAT_SECONDS  # longer than 3 × interval: no worker may fence itself over it
    long_run = gone + 8.0
    with Chaos.up(tmp_path, f"(g) pool beta deleted for {gone}s while its runs execute", seed=17) as chaos:
        chaos.plan(long_runs=long_run)
        chaos.burst()

        def beta_full_and_long() -> list[str]:
            assert chaos.watch is not None
            states = chaos.watch.invariants.snapshot()
            held = chaos.watch.invariants.holders()
            running = [n for n, (p, _, _) in held.items() if p == "beta" and states[n] == "Running"]
            long = any(chaos.planned[n].seconds == long_run for n in running)
            return running if len(running) == POOL_LIMITS["beta"] and long else []

        executing = wait_for(beta_full_and_long, timeout=60, interval=0.1, what="pool beta full, a long run Running")
        chaos.kubectl("delete", "wp", "beta", "-n", NAMESPACE, "--wait=false")
        time.sleep(gone)  # the fault's duration
        # Re-applied (as GitOps would) while the long runs still execute: its first pass must not crash them.
        chaos.kubectl.apply(pool("beta", concurrencyLimit=POOL_LIMITS["beta"]), namespace=NAMESPACE)
        chaos.fault(f"pool beta deleted with {len(executing)} runs Running, re-applied {gone}s later while they ran")
        chaos.healed()
        verdict = conclude(chaos, report)
    # Deleting a pool never kills its running work: beta's runs must all complete. (alpha's may be
    # fenced if the loaded API server answers its heartbeats too late; that is not this scenario's claim.)
    verdict.check(may_stop={name for name, p in verdict.planned.items() if p.pool != "beta"})


def test_h_operator_killed_twice_under_latency_stalls_and_resets(tmp_path: Path, report: Report) -> None:
    with Chaos.up(tmp_path, "(h) operator SIGKILLed twice under (a)'s toxics", seed=18) as chaos:
        operator = chaos.operators["operator"]
        downtimes = []
        with slow_and_flaky(chaos.proxy("operator")):
            chaos.burst()
            for _ in range(2):
                # Killed the moment a grant lands (the rest of its pass is likely in flight), or after 30 s.
                assert chaos.watch is not None
                grants, waited = len(chaos.watch.grants), time.monotonic()
                while len(chaos.watch.grants) == grants and time.monotonic() - waited < 30:
                    time.sleep(0.02)
                landed = "after a grant" if len(chaos.watch.grants) > grants else "with no grant for 30 s"
                operator.stop(signal.SIGKILL)
                killed = time.monotonic()
                operator.start(wait=False)
                wait_for(operator.healthy, timeout=SETUP_BOUND, what="the restarted operator's health endpoint")
                back = time.monotonic() - killed
                downtimes.append(f"{landed} with {chaos.terminal()} runs ended, back in {back:.1f}s")
            hold(chaos, 10, share=0.6)
        chaos.fault(f"on the operator: {TOXICS}; SIGKILLed twice: {'; '.join(downtimes)}")
        chaos.healed()
        verdict = conclude(chaos, report)
    verdict.check()


def test_i_operator_writes_delayed_past_their_timeout(tmp_path: Path, report: Report) -> None:
    # A request the operator gave up on (its write timeout is 5 s) still reaches the API server and
    # lands seconds later, after a read-back has shown the run unchanged: a slot handed to another
    # run on the strength of that read would be held twice once the late grant lands.
    label = "(i) operator requests delayed 6–7 s on 20 % of its connections: writes land after their timeout"
    with Chaos.up(tmp_path, label, seed=19) as chaos:
        proxy = chaos.proxy("operator")
        proxy.add("late", "latency", stream="upstream", latency=7000, jitter=500, toxicity=0.5)
        with rerolling(proxy, "late", every=10.0):  # longer than the delay: a re-draw would cut it short
            chaos.burst()
            hold(chaos, 90, share=0.8)
        chaos.fault("on the operator: requests delayed 6–7 s (upstream) on 20 % of connections, re-drawn every 10 s")
        chaos.healed()
        verdict = conclude(chaos, report)
    verdict.check()
