"""Offline training for LSTM Lab: `python -m training <slug>` (see training/__main__.py)."""
