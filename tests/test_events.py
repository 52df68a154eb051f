"""Events as they are made: one payload, one frame, the contract's fields."""

from __future__ import annotations

import re

from core.events import make_event
from core.models import rfc3339, utcnow


def test_event_timestamps_are_rfc3339_milliseconds_of_now():
    # Written out once per second (events come by the thousand), and still the clock's own time.
    for _ in range(2000):
        before = rfc3339(utcnow())
        stamp = make_event(1, "step-delta", "s", {"delta": "x", "progress": 0}).json()["timestamp"]
        after = rfc3339(utcnow())
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
        assert before <= stamp <= after
