"""The HTTP face of `arrivals serve`: MLflow's scoring protocol, health, and what is served.

Routes: `POST /invocations` (JSON `dataframe_split` / `dataframe_records`, or CSV), `GET /ping`
and `GET /health` (200 once a champion is loaded, 503 before), `GET /version`. A response
names the version that answered it (`X-Model-Version`), so a client can tell a swap happened.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving import scoring
from serving.models import LoadedModel, ServedModels
from serving.shadow import ShadowTally

if TYPE_CHECKING:
    import pandas as pd

    from serving.prediction_log import PredictionLog
    from shared.settings import DatasetSettings

log = logging.getLogger(__name__)


@dataclass
class ServeState:
    """Everything a request reads: set up once by the server, shared by every request."""

    model_name: str
    dataset: DatasetSettings
    max_rows: int
    models: ServedModels
    tally: ShadowTally
    prediction_log: PredictionLog | None = None


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse(scoring.error_body(message, status), status_code=status)


def _no_champion(state: ServeState) -> JSONResponse:
    return _error(
        f"no champion of {state.model_name} yet: a version becomes champion once the holdout "
        "can judge it (drop a file, then `arrivals status`)",
        503,
    )


def _shadow_score(
    state: ServeState,
    champion: LoadedModel,
    challenger: LoadedModel,
    features: pd.DataFrame,
    answered: Any,
) -> None:
    """After the response: the challenger scores the same rows; only agreement is kept."""
    try:
        shadow = challenger.pipeline.predict(features)
    except ValueError as error:  # a challenger that cannot score these rows answers nothing
        log.warning("Shadow v%s could not score a request: %s", challenger.version, error)
        return
    state.tally.record(
        champion.version, challenger.version, challenger.ref.run_id, answered, shadow
    )


def version_body(state: ServeState) -> dict[str, Any]:
    """GET /version: the served version, its decision, when it went live, the shadow tally."""
    served = state.models.current
    champion = served.champion
    agreement = state.tally.current()
    shadow = None
    if served.challenger is not None:
        shadow = {"version": served.challenger.version, "decision": served.challenger.ref.decision}
        if agreement is not None and agreement.challenger == served.challenger.version:
            shadow.update(agreement.to_json())
    return {
        "model": state.model_name,
        "version": champion.version if champion else None,
        "decision": champion.ref.decision if champion else None,
        "run_id": champion.ref.run_id if champion else None,
        "loaded_at": champion.loaded_at if champion else None,
        "shadow": shadow,
    }


def build_app(
    state: ServeState,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The ASGI app over `state`; `lifespan` runs the background work (follow, flush)."""
    app = FastAPI(title="arrivals serve", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/ping")
    @app.get("/health")
    def ping() -> Response:
        if state.models.current.champion is None:
            return _no_champion(state)
        return Response("\n", media_type="text/plain")

    @app.get("/version")
    def version() -> JSONResponse:
        return JSONResponse(version_body(state))

    @app.post("/invocations")
    async def invocations(request: Request, background: BackgroundTasks) -> Response:
        served = state.models.current  # read once: this request finishes on these models
        champion = served.champion
        if champion is None:
            return _no_champion(state)
        body = await request.body()
        try:
            cells = scoring.parse_body(body, request.headers.get("content-type", ""))
            features = scoring.features_of(cells, state.dataset, state.max_rows)
        except scoring.BadRequest as error:
            return _error(str(error), error.status)
        predictions = champion.pipeline.predict(features)
        if served.challenger is not None:
            background.add_task(
                _shadow_score, state, champion, served.challenger, features, predictions
            )
        if state.prediction_log is not None:
            request_id = uuid.uuid4().hex
            try:
                state.prediction_log.append(features, predictions, champion.version, request_id)
            except ValueError as error:  # the answer stands; only its log entry is lost
                log.warning("Prediction not logged: %s", error)
        return JSONResponse(
            {"predictions": scoring.predictions_json(predictions)},
            headers={"X-Model-Name": state.model_name, "X-Model-Version": champion.version},
            background=background,
        )

    return app
