"""`make bench`: how fast a dropped file becomes a champion decision, bursts, retrain cost.

The project's issue #4. Targets are measured and reported here, never asserted in tests.

Parts (choose with --parts; the default is all of them):
  latency          single drops into a fresh stack (worker poll from params.yaml); every
                   stage is timed with the ledger's, Prefect's and MLflow's own timestamps
  window           pairs of drops, the second placed as soon as the first run has judged
                   its version (its last round is over): it lands while the automation's
                   trigger ignores arrivals, so the run that took the first file must take
                   it (else it waits for the sensor's sweep, 10 s later)
  burst            100, then 500 distinct files copied into the inbox by one `cp`
  default-polling  the single-drop latency again with Prefect's default 10 s worker poll
  retrain          the retrain stage alone (no servers) as accepted data grows to 1M rows
  decisions        promotions between equal models, and what one decision costs
  serve            `arrivals serve`: requests/s and latency for 1 and 100 rows, promotion
                   event -> first answer from the new version, failed requests during 20
                   promotions under load; `mlflow models serve` of the same model beside it

Every stack is started with `arrivals up --detach` in its own temporary home, on free
ports, with the producer's clock parked, and always stopped with `arrivals down`.
Results: markdown tables on stdout, JSON in bench/results/latest.json plus a timestamped copy.
"""
