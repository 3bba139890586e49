"""What the operator contract promises, shared by the unit and end-to-end tests."""

# Every registered version carries these MLflow tags (the decision, with its interval).
DECISION_TAGS = (
    "arrivals.delta",
    "arrivals.delta_ci_low",
    "arrivals.delta_ci_high",
    "arrivals.confidence",
    "arrivals.decision_reason",
    "arrivals.decision",
)
