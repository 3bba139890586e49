"""The chaos soak: a fresh stack under never-ending arrivals, random kill -9s and a full disk,
then invariants over the ledger, the registry and the event feed (`make soak`)."""
