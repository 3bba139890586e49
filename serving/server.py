"""`arrivals serve`: the champion over HTTP, on FastAPI + uvicorn (what MLflow's own scoring
server runs on), hot-swapped when a promotion moves the alias.

Started by `arrivals up` as the service `serve`, or alone with `arrivals serve`. One process,
one event loop: requests are answered on it; registry calls, model loads and log writes run
in threads beside it (serving/follow.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI

from serving.app import ServeState, build_app
from serving.follow import Refresher, check_alias, follow_promotions, write_periodically
from serving.models import MlflowSource, ServedModels
from serving.shadow import ShadowTally
from shared.settings import Settings

log = logging.getLogger("arrivals.serve")
# A registry call that hangs or retries for minutes would only delay a swap (requests never
# wait on one), but the alias check should notice a recovered MLflow within a poll or two.
MLFLOW_CLIENT_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def serve_state(settings: Settings) -> ServeState:
    """The models, the shadow tally and the prediction log, as the settings ask."""
    source = MlflowSource(settings.mlflow_url, settings.model.name, settings.dirs.models)
    prediction_log = None
    if settings.serve.log_predictions:
        from serving.prediction_log import PredictionLog

        prediction_log = PredictionLog(settings.dirs.predictions, settings.serve.log_max_bytes)
    return ServeState(
        model_name=settings.model.name,
        dataset=settings.dataset,
        max_rows=settings.serve.max_rows,
        models=ServedModels(source, shadow=settings.serve.shadow),
        tally=ShadowTally(),
        prediction_log=prediction_log,
    )


def lifespan_of(state: ServeState, poll_seconds: float):
    """Load the champion, then follow promotions until shutdown; flush the log at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        refresh = Refresher(state)
        await refresh("start")
        tasks = [
            asyncio.create_task(follow_promotions(refresh)),
            asyncio.create_task(check_alias(refresh, poll_seconds)),
            asyncio.create_task(write_periodically(state)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if state.prediction_log is not None:
                await asyncio.to_thread(state.prediction_log.close)

    return lifespan


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn finishes the requests in flight first)."""
    import uvicorn

    for name, value in MLFLOW_CLIENT_ENV.items():
        os.environ.setdefault(name, value)
    # The stack gives every service its Prefect; run alone, this home's.
    os.environ.setdefault("PREFECT_API_URL", settings.prefect_api_url)
    settings.dirs.ensure()
    state = serve_state(settings)
    app = build_app(state, lifespan=lifespan_of(state, settings.serve.poll_seconds))
    host, port = settings.services.host, settings.services.serve_port
    log.info("Serving %s on http://%s:%d/invocations", settings.model.name, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main() -> None:
    """`python -m serving.server`: the stack's `serve` service."""
    from shared.logs import setup_logging
    from shared.settings import load_settings

    setup_logging()
    run(load_settings())


if __name__ == "__main__":
    main()
