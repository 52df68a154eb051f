"""`make bench`: runs every benchmark against real server processes and prints its figures.

`python -m bench` runs them all: e2e, longpoll, instances, then compare (this service against a minimal
Starlette + sse-starlette + uvicorn server of the same contract, bench/reference.py, with the
performance targets); `python -m bench NAME [OPTIONS]` runs one, with its options
(`make bench ARGS="instances --rounds 5"`, `python -m bench compare --idle-streams 50000`).
Options without a name are e2e's, as they always were.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence

from bench import compare, e2e, instances, longpoll

BENCHMARKS: dict[str, Callable[[Sequence[str]], Awaitable[None]]] = {
    "e2e": e2e.run_all,
    "instances": instances.run_all,
    "compare": compare.run_all,
    "longpoll": longpoll.run_all,
}


async def run(argv: Sequence[str]) -> None:
    if argv and argv[0] in BENCHMARKS:
        await BENCHMARKS[argv[0]](argv[1:])
        return
    await e2e.run_all(argv)
    print()
    await longpoll.run_all([])
    print()
    await instances.run_all([])
    print()
    await compare.run_all([])


def main() -> int:
    asyncio.run(run(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
