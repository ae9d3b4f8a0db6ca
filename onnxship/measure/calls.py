"""A runtime's call as the benchmark times it, split where the clock starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _as_is(feed: Any) -> Any:
    return feed


@dataclass(frozen=True)
class TimedCall:
    """`prepare` brings the benchmark's feed (the graph's inputs by name) into the form the
    runtime takes, once per batch and outside the clock: a library's user holds their data in its
    form already (the array; a DataFrame of typed columns). `run` is what the clock times. Calling
    the object does both, for callers that time nothing (the cold-start probe, the tree peers)."""

    run: Callable[[Any], Any]
    prepare: Callable[[dict], Any] = _as_is

    def __call__(self, feed: dict) -> Any:
        return self.run(self.prepare(feed))

    def fed_as(self, rename: Callable[[dict], dict]) -> TimedCall:
        """The same call fed another feed, brought to this one's by `rename` (outside the clock)."""
        return TimedCall(self.run, lambda feed: self.prepare(rename(feed)))
