"""Operator telemetry: Prometheus metrics, health probes and logging."""
