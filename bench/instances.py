"""Many instances: one on SQLite, one on Redis and `--workers=2` on Redis, side by side, against targets.

For each set-up: sessions/s end to end, fan-out deliveries/s and Redis commands per delivered event;
then the ratios the many-instances design sets as targets, and whether each is met.

Each set-up is a real `server.py` at pace 0 on a free loopback port (`--workers=2` is one invocation
whose two processes share the port), fed from this process over HTTP. Redis is a redis-server of
our own (tools/redis_server.py), emptied between set-ups; without one the Redis columns are skipped.

Fan-out: a few sessions, each with many streams; the streams are raw sockets in separate processes
(bench/subscribers.py), all connected before any asks for its stream, then started at once. The
first stream of a session starts its run, so the others follow it live or replay what they missed.
With two workers the streams are split evenly between them: the kernel hands each connection to
one worker or the other, so the subscribers open twice as many as they need and keep, from what
/proc says each worker holds, half on each. Deliveries/s is every event received on every stream
over the time from the go-ahead to the end of the last stream; the CPU the server and the
subscribers used meanwhile shows which of them was the bottleneck. Redis's own command counts
(INFO commandstats) over the same span, divided by the deliveries, give the commands per delivered
event; each stream's own requests (its subscribe and replay) count too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from bench.e2e import Client, Throughput, throughput
from bench.server import PROJECT, UNLIMITED, ChildServer
from tools.redis_server import RedisServer, find_redis_server

E2E_DEADLINE = 600.0  # seconds the end-to-end part of one set-up may take
CONNECT_DEADLINE = 60.0  # for the subscriber processes to start and open their connections
STREAM_DEADLINE = 120.0  # for every stream of a fan-out round to end
SPREAD_DEADLINE = 5.0  # for the server's processes to have accepted (or closed) the connections
TCP_ESTABLISHED = "01"  # a connection's state in /proc/net/tcp
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The many-instances design's targets.
WORKERS_FAN_OUT = 1.6  # --workers=2 at least this many times one Redis instance's deliveries/s
REDIS_END_TO_END = 0.7  # one Redis instance at least this share of SQLite's sessions/s
COMMANDS_PER_EVENT = 0.05  # Redis commands per delivered event at most, at 500 subscribers


@dataclass(frozen=True)
class Setup:
    name: str
    workers: int
    redis: bool


SQLITE = Setup("sqlite", 1, False)
REDIS = Setup("redis", 1, True)
TWO_WORKERS = Setup("redis x2", 2, True)
SETUPS = (SQLITE, REDIS, TWO_WORKERS)


class InstanceServer(ChildServer):
    """`server.py` at pace 0 with the given store options, as `workers` processes sharing one port;
    it logs to `log` (a file: nothing has to keep reading it while the benchmark runs)."""

    def __init__(self, log: Path, store: Sequence[str], workers: int) -> None:
        # The figures are for the defaults, so settings left in this shell's environment stay out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        self.workers = workers
        command = [
            sys.executable,
            "server.py",
            "--host=127.0.0.1",
            "--port=0",
            "--pace=0",
            "--log_format=text",
        ]
        super().__init__([*command, f"--workers={workers}", *UNLIMITED, *store], log, env, listeners=workers)

    def serving_pids(self) -> list[int]:
        """The processes that accept connections: the server itself, or its forked workers."""
        if self.workers == 1:
            return [self.proc.pid]
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as children:
            return [int(pid) for pid in children.read().split()]

    def connections(self) -> list[set[int]]:
        """Per serving process, the client ports of the connections to the port it holds (with two
        workers, which one the kernel handed each connection to): /proc/net/tcp's sockets on the
        port, looked up among the process's files."""
        client_ports = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as rows:
                for row in list(rows)[1:]:
                    local, remote, state, inode = (row.split()[i] for i in (1, 2, 3, 9))
                    if int(local.rsplit(":", 1)[1], 16) == self.port and state == TCP_ESTABLISHED:
                        client_ports[f"socket:[{inode}]"] = int(remote.rsplit(":", 1)[1], 16)
        held = []
        for pid in self.serving_pids():
            ports = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):  # closed meanwhile
                    port = client_ports.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if port is not None:
                        ports.add(port)
            held.append(ports)
        return held

    def cpu_seconds(self) -> float:
        """User plus system CPU time the serving processes have used (fields 14 and 15 of their stat)."""
        total = 0
        for pid in self.serving_pids():
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS


@dataclass
class FanOut:
    deliveries_per_second: list[float] = field(default_factory=list)  # one figure per round
    deliveries: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds the serving processes used in the rounds
    subscribers_cpu: float = 0.0  # and the subscriber processes
    redis_commands: int = 0
    spread: list[list[int]] = field(default_factory=list)  # streams per serving process, per round

    @property
    def typical(self) -> float:
        return statistics.median(self.deliveries_per_second)

    @property
    def server_cores(self) -> float:
        return self.server_cpu / self.seconds

    @property
    def subscriber_cores(self) -> float:
        return self.subscribers_cpu / self.seconds

    @property
    def commands_per_delivery(self) -> float:
        return self.redis_commands / max(self.deliveries, 1)


@dataclass
class Figures:
    end_to_end: Throughput
    fan_out: FanOut
    cost: FanOut  # one round, one session with --cost-streams streams (Redis set-ups only)


async def redis_calls(redis: Redis) -> int:
    """Commands Redis has run since its counters were reset, less the benchmark's own INFO and CONFIG."""
    stats = await redis.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    )


async def connections_held(server: InstanceServer, count: int) -> list[set[int]]:
    """The connections each serving process holds, once they hold `count` in all (or at the deadline)."""
    deadline = time.monotonic() + SPREAD_DEADLINE
    while True:
        held = server.connections()
        if sum(map(len, held)) == count or time.monotonic() > deadline:
            return held
        await asyncio.sleep(0.05)


def evenly(ports: list[int], held: list[set[int]], count: int) -> list[int]:
    """`count` of a subscriber process's connections, taken in turn from each serving process that
    holds some, so the streams are split as evenly as the connections allow."""
    pools = [[port for port in ports if port in worker] for worker in held]
    chosen: list[int] = []
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop())
    return chosen


async def start_subscribers(
    port: int, connections: int, per_session: int, session_ids: list[str]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.subscribers",
        str(port),
        str(connections),
        str(per_session),
        str(STREAM_DEADLINE),
        *session_ids,
        cwd=PROJECT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def ask(load: asyncio.subprocess.Process, line: bytes) -> bytes:
    """Send a subscriber process a line and return the line it answers with."""
    assert load.stdin is not None and load.stdout is not None
    load.stdin.write(line)
    await load.stdin.drain()
    return await load.stdout.readline()


async def fan_out_round(
    server: InstanceServer, client: Client, args: argparse.Namespace, redis: Redis | None, figures: FanOut
) -> None:
    """Streams for `args.fan_out_sessions` new sessions, `args.per_session` each, from `args.processes`
    subscriber processes: all connected (and split evenly over the server's workers) before any is
    asked for, then all asked for at once."""
    session_ids = [(await client.create(f"fan-out {i}"))[0] for i in range(args.fan_out_sessions)]
    shares = [session_ids[i :: args.processes] for i in range(min(args.processes, len(session_ids)))]
    # With several workers, connections to spare: the kernel decides which worker gets each.
    spare = 2 if server.workers > 1 else 1
    loads: list[asyncio.subprocess.Process] = []
    results = []
    try:
        for share in shares:
            connections = spare * args.per_session * len(share)
            loads.append(await start_subscribers(server.port, connections, args.per_session, share))
        async with asyncio.timeout(CONNECT_DEADLINE):
            opened = []
            for load in loads:
                assert load.stdout is not None
                opened.append(json.loads(await load.stdout.readline() or b"null"))
            if None in opened:
                raise RuntimeError("a subscriber process could not connect")
            held = await connections_held(server, sum(map(len, opened)))
            for load, ports, share in zip(loads, opened, shares, strict=True):
                keep = evenly(ports, held, args.per_session * len(share))
                if await ask(load, json.dumps(keep).encode() + b"\n") != b"ready\n":
                    raise RuntimeError("a subscriber process did not keep the connections it was given")
            streams = args.per_session * args.fan_out_sessions
            figures.spread.append([len(ports) for ports in await connections_held(server, streams)])
        if redis is not None:
            await redis.config_resetstat()
        cpu_before = server.cpu_seconds()
        for load in loads:
            assert load.stdin is not None
            load.stdin.write(b"go\n")
            await load.stdin.drain()
        async with asyncio.timeout(STREAM_DEADLINE + 10):
            for load in loads:
                assert load.stdout is not None
                results.append(json.loads(await load.stdout.readline() or b"{}"))
                await load.wait()
        figures.server_cpu += server.cpu_seconds() - cpu_before
        if redis is not None:
            figures.redis_commands += await redis_calls(redis)
    finally:
        for load in loads:
            if load.returncode is None:
                load.kill()
                await load.wait()
    for result in results:
        if "events" not in result:
            raise RuntimeError(f"a subscriber process failed: {result.get('error', 'it gave no figures')}")
        if result["not_ok"] or result["not_final"]:
            raise RuntimeError(
                f"of {result['streams']} streams, {result['not_ok']} were not answered 200 "
                f"(statuses seen: {', '.join(result['statuses'])}) and {result['not_final']} did not "
                "end with the final event"
            )
    delivered = sum(result["events"] for result in results)
    elapsed = max(result["ended"] for result in results) - min(result["began"] for result in results)
    figures.deliveries += delivered
    figures.seconds += elapsed
    figures.subscribers_cpu += sum(result["cpu_seconds"] for result in results)
    figures.deliveries_per_second.append(delivered / elapsed)


async def measure(
    server: InstanceServer, args: argparse.Namespace, redis: Redis | None, setup: Setup
) -> Figures:
    client = Client(server.url)
    async with asyncio.timeout(E2E_DEADLINE):
        end_to_end = await throughput(client, args.sessions, args.concurrency)
    fan_out = FanOut()
    for _ in range(args.rounds):
        await fan_out_round(server, client, args, redis, fan_out)
    cost = FanOut()
    if redis is not None:
        one_session = argparse.Namespace(
            **{**vars(args), "fan_out_sessions": 1, "per_session": args.cost_streams}
        )
        await fan_out_round(server, client, one_session, redis, cost)
    rates = ", ".join(f"{rate:,.0f}" for rate in fan_out.deliveries_per_second)
    spread = " ".join("/".join(map(str, streams)) for streams in fan_out.spread)
    print(
        f"{setup.name}: {end_to_end.sessions_per_second:.1f} sessions/s end to end; fan-out rounds "
        f"{rates} deliveries/s" + (f", streams per worker {spread}" if setup.workers > 1 else ""),
        flush=True,
    )
    return Figures(end_to_end, fan_out, cost)


def verdict(value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    return "met" if met else "NOT met"


def report(figures: dict[Setup, Figures], subscribers: int) -> None:
    columns = list(figures.items())
    rows = [
        ("sessions/s end to end", [f"{f.end_to_end.sessions_per_second:.1f}" for _, f in columns]),
        ("POST /api/sessions p99 ms", [f"{f.end_to_end.create_p99_ms:.0f}" for _, f in columns]),
        ("fan-out deliveries/s (median)", [f"{f.fan_out.typical:,.0f}" for _, f in columns]),
        ("  server CPU meanwhile, cores", [f"{f.fan_out.server_cores:.2f}" for _, f in columns]),
        ("  subscribers' CPU, cores", [f"{f.fan_out.subscriber_cores:.2f}" for _, f in columns]),
    ]
    if any(setup.redis for setup, _ in columns):
        commands = [f"{f.fan_out.commands_per_delivery:.4f}" if s.redis else "-" for s, f in columns]
        rows.append(("Redis commands per delivery", commands))
        commands = [f"{f.cost.commands_per_delivery:.4f}" if s.redis else "-" for s, f in columns]
        rows.append((f"  one session, {subscribers} streams", commands))
    print()
    print(f"{'':<30}" + "".join(f"{setup.name:>12}" for setup, _ in columns))
    for label, cells in rows:
        print(f"{label:<30}" + "".join(f"{cell:>12}" for cell in cells))
    print()
    print("targets (informational: the figures vary from run to run on a shared machine):")
    if REDIS not in figures:
        print("  not measured: they compare the Redis set-ups, and redis-server is not installed")
        return
    one, two = figures[REDIS], figures[TWO_WORKERS]
    ratio = two.fan_out.typical / one.fan_out.typical
    print(
        f"  --workers=2 vs one Redis instance, fan-out deliveries/s: {ratio:.2f}x "
        f"(target at least {WORKERS_FAN_OUT}x): {verdict(ratio, WORKERS_FAN_OUT, True)}"
    )
    ratio = one.end_to_end.sessions_per_second / figures[SQLITE].end_to_end.sessions_per_second
    print(
        f"  one Redis instance vs SQLite, sessions/s end to end: {ratio:.2f}x "
        f"(target at least {REDIS_END_TO_END}x): {verdict(ratio, REDIS_END_TO_END, True)}"
    )
    # The worse of the two set-ups. Each stream's own requests count here (its subscribe and replay);
    # the event log's figure without HTTP (bench/redis_fanout.py) leaves them out.
    worst = max(one.cost.commands_per_delivery, two.cost.commands_per_delivery)
    print(
        f"  Redis commands per delivered event at {subscribers} subscribers, through HTTP: {worst:.4f} "
        f"(target at most {COMMANDS_PER_EVENT}): {verdict(worst, COMMANDS_PER_EVENT, False)}"
    )


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return number


async def run_all(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench instances")
    parser.add_argument("--sessions", type=positive, default=160, help="sessions end to end, per set-up")
    parser.add_argument("--concurrency", type=positive, default=16, help="sessions end to end at a time")
    parser.add_argument("--fan-out-sessions", type=positive, default=4, help="sessions per fan-out round")
    parser.add_argument("--per-session", type=positive, default=125, help="streams per fan-out session")
    # The Redis cost is counted on one session that many watch, as its target is set: what one event
    # costs Redis however many watch it (in the rounds above, each session's own writes count too).
    parser.add_argument(
        "--cost-streams",
        type=positive,
        default=500,
        help="streams of the one session whose Redis cost is counted",
    )
    parser.add_argument("--processes", type=positive, default=2, help="subscriber processes")
    parser.add_argument("--rounds", type=positive, default=5, help="fan-out rounds per set-up")
    args = parser.parse_args(argv)
    subscribers = args.cost_streams
    print(
        f"Instances: per set-up, {args.sessions} sessions end to end ({args.concurrency} at a time, pace 0), "
        f"then {args.rounds} fan-out rounds of {args.fan_out_sessions} sessions x {args.per_session} streams "
        f"(from {args.processes} processes); on Redis, one more round of 1 session x {subscribers} streams "
        "for the Redis commands per delivered event",
        flush=True,
    )
    executable = find_redis_server()
    setups: tuple[Setup, ...] = SETUPS
    if executable is None:
        print(
            "redis-server is not installed (Debian: apt-get install redis-server; `make redis` does it "
            "as root): the Redis set-ups are skipped"
        )
        setups = tuple(setup for setup in SETUPS if not setup.redis)
    figures: dict[Setup, Figures] = {}
    with tempfile.TemporaryDirectory() as scratch:
        redis_server = RedisServer(Path(scratch) / "redis", executable=executable) if executable else None
        redis = Redis.from_url(redis_server.start().url, socket_timeout=30) if redis_server else None
        try:
            for setup in setups:
                if redis_server is not None and redis is not None and setup.redis:
                    await redis.flushall()  # each set-up starts from an empty Redis
                    store = ["--store=redis", f"--redis_url={redis_server.url}"]
                else:
                    store = ["--store=sqlite", f"--db_path={Path(scratch) / 'bench.db'}"]
                log = Path(scratch) / f"{setup.name.replace(' ', '-')}.log"
                server = InstanceServer(log, store, setup.workers)
                try:
                    figures[setup] = await measure(server, args, redis if setup.redis else None, setup)
                finally:
                    server.terminate()
        finally:
            if redis is not None:
                await redis.aclose()
            if redis_server is not None:
                redis_server.stop()
    report(figures, subscribers)
