"""Put a file in a home's ledger in a given state, the way the sensor and a retrain would."""

from __future__ import annotations

import hashlib

from shared.ledger import Ledger


def file_in_state(ledger: Ledger, name: str, state: str, *, version: str | None = "1") -> str:
    """Record `name` as arrived, then announce, claim and finish it: `trained` (in `version`),
    `suspect`, or `announced` (pending). Returns its sha256."""
    sha256 = hashlib.sha256(name.encode()).hexdigest()
    arrival = ledger.record_arrival(
        name=name, path=f"/inbox/{name}", size=len(name), sha256=sha256, detected_via="scan"
    )
    assert arrival is not None
    ledger.mark_announced(arrival.id)
    if state == "announced":
        return sha256
    ledger.claim_pending("run-0", ttl_seconds=60)
    if state == "trained":
        ledger.mark_trained({sha256: 10}, run_id="run-0", version=version)
    elif state == "suspect":
        ledger.mark_suspect({sha256: "the challenger lost with it"}, run_id="run-0")
    else:
        raise ValueError(state)
    return sha256
