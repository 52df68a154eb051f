"""API keys: loaded from a file of hashes or the environment, checked in constant time, never logged.

A keys file has one key a line, `NAME SHA256-HEX [admin]`, `#` starting a comment. Make a key and
its line with `python -m conf.keys NAME [--admin]`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import SettingsError

HEX_DIGEST = 64


@dataclass(frozen=True)
class Identity:
    """Who a request is: the key's name (the owner of what it creates) and whether it sees all."""

    name: str
    admin: bool = False


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The configured keys, by the SHA-256 of each; empty when the service runs without keys."""

    def __init__(self, hashed: dict[str, Identity]) -> None:
        self._hashed = hashed

    def __bool__(self) -> bool:
        return bool(self._hashed)

    def __len__(self) -> int:
        return len(self._hashed)

    def identify(self, key: str) -> Identity | None:
        wanted = digest(key)
        found = None
        for hashed, identity in self._hashed.items():
            # Compare with every key, in constant time, so timing says nothing about which is near.
            if hmac.compare_digest(hashed, wanted):
                found = identity
        return found

    @classmethod
    def load(cls, file: Path | None, inline: str) -> KeyRing:
        """From the keys file and the `api_keys` setting (NAME:KEY[:admin], comma-separated)."""
        hashed: dict[str, Identity] = {}
        if file is not None:
            hashed.update(_read_file(file))
        for entry in filter(None, (part.strip() for part in inline.split(","))):
            name, _, rest = entry.partition(":")
            key, _, role = rest.partition(":")
            if not name or not key or role not in ("", "admin"):
                # Never echo the entry: it holds a key.
                raise SettingsError("api_keys: each entry is NAME:KEY or NAME:KEY:admin")
            hashed[digest(key)] = Identity(name, role == "admin")
        return cls(hashed)


def _read_file(path: Path) -> dict[str, Identity]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"api_keys_file: cannot read {path}: {exc}") from exc
    hashed = {}
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        valid = len(words) in (2, 3) and len(words[1]) == HEX_DIGEST
        valid = valid and all(c in "0123456789abcdef" for c in words[1].lower())
        if not valid or (len(words) == 3 and words[2] != "admin"):
            raise SettingsError(f"api_keys_file: {path} line {number} is not NAME SHA256-HEX [admin]")
        hashed[words[1].lower()] = Identity(words[0], len(words) == 3)
    return hashed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conf.keys", description="Make a new API key, or a webhook signing secret."
    )
    parser.add_argument("name", nargs="?", help="whose key it is: the owner of the sessions it creates")
    parser.add_argument("--admin", action="store_true", help="the key sees every session and /health in full")
    parser.add_argument(
        "--webhook", action="store_true", help="make a webhook_secret (whsec_...) instead of an API key"
    )
    args = parser.parse_args(argv)
    if args.webhook:
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        print(f"webhook_secret (set ORCH_WEBHOOK_SECRET; receivers verify with it): whsec_{secret}")
        return 0
    if not args.name:
        parser.error("give the key's NAME (or --webhook for a webhook secret)")
    key = secrets.token_urlsafe(32)
    print(f"key (give it to the client; it is not stored): {key}")
    print(f"line for the api_keys_file: {args.name} {digest(key)}{' admin' if args.admin else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
