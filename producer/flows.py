"""The producer: a cron-scheduled flow that drops the next batch into the inbox."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from producer.batches import (
    next_batch_number,
    read_state,
    remember,
    select_batch,
    write_batch,
)
from shared.dataset import training_pool
from shared.settings import Settings, load_settings


@task
def produce(settings: Settings, batch: int | None) -> str | None:
    """Write batch `batch` (default: the next one) into the inbox, atomically."""
    logger = get_run_logger()
    off = settings.producer_off_reason
    if off is not None:  # a deployment left from an earlier config, or a direct call
        logger.info("The producer is off (%s): nothing to produce.", off)
        return None
    state_path = settings.dirs.producer_state
    number = batch if batch is not None else next_batch_number(read_state(state_path))
    limit = settings.automation.max_batches
    if number > limit:
        logger.info("Batch %d is past max_batches=%d: nothing to produce.", number, limit)
        return None
    chosen = select_batch(
        training_pool(settings.dataset, settings.holdout),
        number,
        batch_size=settings.automation.batch_size,
        seed=settings.automation.batch_seed,
        dataset_name=settings.dataset.name,
    )
    if chosen is None:
        logger.info("The source has no rows left for batch %d: nothing to produce.", number)
        return None
    settings.dirs.inbox.mkdir(parents=True, exist_ok=True)
    path = write_batch(chosen, settings.dirs.inbox)
    remember(state_path, chosen, path)
    logger.info("Wrote batch %d (%d rows) to %s", number, len(chosen.rows), path)
    return str(path)


@flow(name="produce-batch")
def produce_batch(batch: int | None = None) -> str | None:
    """Drop the next batch of the source dataset into the inbox (or batch N when given)."""
    return produce(load_settings(), batch)
