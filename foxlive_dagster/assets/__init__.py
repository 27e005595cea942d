"""Asset definitions, split by kind: models, per-cycle trading, daily reports."""
