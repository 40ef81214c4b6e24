"""Metrics: the cluster's own and the program's, merged across workers (docs/metrics.md)."""
