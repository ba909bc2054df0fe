"""Shared pytest configuration and fixtures for LSTM Lab."""

from __future__ import annotations


def pytest_configure(config):
    """Markers used across the test files."""
    config.addinivalue_line(
        "markers", "slow: full-data or multi-process test (seconds to a minute); deselect with -m 'not slow'")
