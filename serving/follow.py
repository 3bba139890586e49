"""What keeps the served model current while requests are answered: the promotion event, the
alias check behind it, and the periodic writes (prediction log, shadow metrics).

Each loop runs on the server's event loop and hands blocking work (registry calls, model
loads, Parquet writes) to a thread, so requests keep being answered meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from shared import events

if TYPE_CHECKING:
    from serving.app import ServeState

log = logging.getLogger(__name__)
RESUBSCRIBE_SECONDS = 2.0  # after the event stream dropped (the Prefect server restarting)
# MLflow down or failing (its client wraps HTTP errors), a model file unreadable or half-copied.
REGISTRY_ERRORS = (MlflowException, OSError, ValueError, EOFError)
FLUSH_SECONDS = 2.0  # the prediction log is written this often (a crash loses at most this)
SHADOW_LOG_SECONDS = 10.0  # the shadow agreement goes to MLflow this often (when it changed)


class Refresher:
    """Refreshes the served models on request; a failure keeps what is served and is retried."""

    def __init__(self, state: ServeState) -> None:
        self.state = state
        self.failing = False

    async def __call__(self, why: str) -> None:
        try:
            await asyncio.to_thread(self.state.models.refresh)
        except REGISTRY_ERRORS as error:
            if not self.failing:
                log.warning("Registry unavailable (%s); serving what is loaded: %s", why, error)
            self.failing = True
            return
        if self.failing:
            log.info("The registry answers again (%s)", why)
        self.failing = False


async def follow_promotions(refresh: Callable[[str], Awaitable[None]]) -> None:
    """Refresh on every promotion (and every new version: the next shadow challenger)."""
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter

    names = [events.CHAMPION_PROMOTED, events.VERSION_REGISTERED]
    wanted = EventFilter(event=EventNameFilter(name=names))
    down = False
    while True:
        try:
            async with get_events_subscriber(filter=wanted) as subscriber:
                if down:
                    log.info("Listening to promotions again")
                down = False
                await refresh("subscribed")  # what moved while nobody was listening
                async for event in subscriber:
                    log.info("%s: %s", event.event, event.resource.get("prefect.resource.name"))
                    await refresh(event.event)
        except asyncio.CancelledError:
            raise
        # Broad on purpose: the subscriber raises bare Exception once its reconnects fail,
        # besides websocket and OS errors; every one means "listen again shortly".
        except Exception as error:
            if not down:
                log.warning("Promotion events unavailable (%s); alias checks continue", error)
            down = True
        await asyncio.sleep(RESUBSCRIBE_SECONDS)


async def check_alias(refresh: Callable[[str], Awaitable[None]], every: float) -> None:
    """The fallback: ask the registry every `every` seconds, whatever the events said."""
    while True:
        await asyncio.sleep(every)
        await refresh("alias check")


async def write_periodically(state: ServeState, shadow_every: float = SHADOW_LOG_SECONDS) -> None:
    """Flush the prediction log, and put the shadow agreement on the challenger's run."""
    since_shadow = 0.0
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        since_shadow += FLUSH_SECONDS
        if state.prediction_log is not None:
            await asyncio.to_thread(state.prediction_log.flush)
        if since_shadow >= shadow_every:
            since_shadow = 0.0
            await log_shadow(state)


async def log_shadow(state: ServeState) -> None:
    """The current pair's agreement as metrics on the challenger's MLflow run."""
    agreement = state.tally.unlogged()
    if agreement is None:
        return
    try:
        await asyncio.to_thread(
            state.models.source.log_metrics,
            agreement.challenger_run_id,
            agreement.metrics(),
            agreement.rows,
        )
    except REGISTRY_ERRORS as error:  # logged again next time
        log.warning("Could not log the shadow agreement to MLflow: %s", error)
        return
    state.tally.mark_logged(agreement)
