"""Async client for the Akua API (lands with the Akua API issue)."""
