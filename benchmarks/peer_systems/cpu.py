"""CPU time, read where ``benchmarks/peers.py`` needs it: worker process trees and Redis.

``tree_cpu_s(roots)`` is the CPU time of every process the worker commands
started: the processes with a root's pid as their session id (each command
runs in a session of its own) or a root among their ancestors (kashq's
supervisor starts each worker in a session of its own). For each it adds, from
``/proc/<pid>/stat``, ``utime + stime`` (all its threads, the exited ones too)
and ``cutime + cstime`` (its children that exited and were reaped). A process
that exits between two readings therefore moves its whole CPU time into its
parent's ``cutime``, so the difference of two readings still counts every
process once, whether it lived through the window, started in it, or ended in
it; a zombie still shows its own times until it is reaped. Only a process
orphaned out of the tree (re-parented to init, in a session of its own) would
be lost. Resolution: one clock tick (10 ms with ``CLK_TCK`` 100), per process.

``redis_cpu_s(client)`` is ``used_cpu_sys + used_cpu_user`` from ``INFO cpu``:
the server process, all its threads, not its forked children.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    """One sample of a drain: when, jobs done, workers' and Redis's CPU seconds so far,
    and the machine's CPU ticks so far (all, and idle)."""

    at_s: float
    done: int
    workers_s: float
    redis_s: float
    machine: tuple[int, int] = (0, 0)

    def cores_busy_since(self, earlier: Snapshot) -> float:
        """The share of the machine's CPU time that was busy between ``earlier`` and this."""
        ticks, idle = self.machine[0] - earlier.machine[0], self.machine[1] - earlier.machine[1]
        return 1 - idle / ticks if ticks > 0 else 0.0


def machine_ticks() -> tuple[int, int]:
    """The machine's CPU ticks since boot, all and idle (idle + iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(value) for value in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def tree_cpu_s(roots: set[int]) -> tuple[float, int]:
    """CPU seconds of the processes started from ``roots`` (see above), and how many there are."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone since the scan listed it
            continue
        # The command name (field 2) is in parentheses and may hold anything.
        fields = stat[stat.rindex(b")") + 2 :].split()
        pid, ppid, session = int(entry.name), int(fields[1]), int(fields[3])
        parents[pid] = -1 if session in roots else ppid  # -1: in a root's session
        ticks[pid] = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    members = [pid for pid in parents if _in_tree(pid, parents, roots)]
    return sum(ticks[pid] for pid in members) / CLK_TCK, len(members)


def _in_tree(pid: int, parents: dict[int, int], roots: set[int]) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        if pid in roots or parents.get(pid) == -1:
            return True
        pid, seen = parents.get(pid, 0), seen + 1
    return False


def redis_cpu_s(client: redis.Redis) -> float:
    """The Redis server's CPU seconds so far (user + system, its own process)."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
