"""`agentpool events publish`: backfill metering events from a JSON lines file.

Each non-blank line is one event's detail object, as in the `detail` of events/*.json. The
whole file is validated before anything is sent, so a bad line never leaves a partial
backfill. Besides the schema, every event must name a tenant in the tenant registry and a
tier of the tier configuration, and its event time must not be in the future. Event ids are
stable, and the ledger records each id once, so publishing a file again, or a file with
repeated lines, bills every event once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentpool.events import MeteringEvent, parse_event
from agentpool.publisher import MAX_ENTRIES_PER_CALL, MeteringPublisher
from agentpool.tiers import TIERS
from agentpool_dev.operations import Target

# How far past the operator's clock an event time may be. The events of a backfill come from
# other hosts, whose clocks can run a little ahead; anything later has not happened yet.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class LineError:
    """One invalid line of a backfill file: its 1-based number and the reason."""

    line: int
    reason: str


@dataclass
class BackfillFile:
    """The valid events of a backfill file, in file order, and its invalid lines."""

    events: list[MeteringEvent] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)

    @property
    def distinct_events(self) -> int:
        return len({event.event_id for event in self.events})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _validation_reason(error: ValidationError, detail_type: Any) -> str:
    parts = []
    for problem in error.errors():
        path = list(problem["loc"])
        # The tagged union puts the detail-type first in every path, which adds nothing.
        if path and path[0] == detail_type:
            path = path[1:]
        location = ".".join(str(part) for part in path) or "event"
        parts.append(f"{location}: {problem['msg']}")
    return "; ".join(parts)


def _event_reason(
    event: MeteringEvent, now: datetime, tenant_registered: Callable[[str], bool]
) -> str | None:
    """Return why a schema-valid `event` must not be billed, or None when it may be."""
    if event.tier not in TIERS:
        known = ", ".join(sorted(TIERS))
        return f"tier {event.tier!r} is not a configured tier ({known})"
    if not tenant_registered(event.tenant_id):
        return f"tenant {event.tenant_id} is not in the tenant registry"
    if event.event_time > now + MAX_CLOCK_SKEW:
        return (
            f"event time {event.event_time.isoformat()} is in the future "
            f"(now {now.isoformat(timespec='seconds')}, allowed clock skew {MAX_CLOCK_SKEW})"
        )
    return None


def read_backfill(
    path: Path, tenant_registered: Callable[[str], bool], now: datetime
) -> BackfillFile:
    """Parse and validate every line of `path` for billing at UTC time `now`.

    A line must match a metering event schema, name a configured tier and a tenant for which
    `tenant_registered` returns True, and have an event time no later than `now` plus
    MAX_CLOCK_SKEW. `tenant_registered` is called once per distinct tenant id. Numbers with a
    fraction are read as `Decimal`, so quantities keep their exact value. A line that repeats
    an earlier event id with the same content is valid (the ledger counts it once). With
    different content it is invalid, because only one of them could be billed.
    """
    # NOTE: the tier is checked against the tier configuration, not against the tenant's
    # tier in the registry, because the registry stores only the current tier and an older
    # event may predate an upgrade.
    registered: dict[str, bool] = {}

    def is_registered(tenant_id: str) -> bool:
        if tenant_id not in registered:
            registered[tenant_id] = tenant_registered(tenant_id)
        return registered[tenant_id]

    result = BackfillFile()
    seen: dict[str, tuple[int, MeteringEvent]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                detail = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
            except ValueError as error:
                result.errors.append(LineError(number, f"invalid JSON: {error}"))
                continue
            if not isinstance(detail, dict):
                result.errors.append(
                    LineError(number, "invalid event: the line is not a JSON object")
                )
                continue
            try:
                event = parse_event(detail)
            except ValidationError as error:
                result.errors.append(
                    LineError(number, _validation_reason(error, detail.get("detail_type")))
                )
                continue
            reason = _event_reason(event, now, is_registered)
            if reason is not None:
                result.errors.append(LineError(number, f"event {event.event_id}: {reason}"))
                continue
            earlier = seen.get(event.event_id)
            if earlier is not None and earlier[1] != event:
                result.errors.append(
                    LineError(
                        number,
                        f"event id {event.event_id} is already used by line {earlier[0]} "
                        "with different content",
                    )
                )
                continue
            seen.setdefault(event.event_id, (number, event))
            result.events.append(event)
    return result


def publish_backfill(
    target: Target,
    events: list[MeteringEvent],
    on_published: Callable[[int], None] | None = None,
) -> None:
    """Publish `events` to the stack's event bus, calling `on_published(count)` per batch.

    Raises agentpool.publisher.PublishError when PutEvents still fails after its retries.
    Publishing again is safe, because the ledger records each event id once.
    """
    publisher = MeteringPublisher(target.outputs["EventBusName"], target.client("events"))
    for start in range(0, len(events), MAX_ENTRIES_PER_CALL):
        batch = events[start : start + MAX_ENTRIES_PER_CALL]
        publisher.publish(batch)
        if on_published is not None:
            on_published(len(batch))
