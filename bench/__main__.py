"""`make bench`: runs every benchmark against a real server process and prints its figures."""

from __future__ import annotations

import asyncio
import sys

from bench.e2e import run_all


def main() -> int:
    asyncio.run(run_all(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
