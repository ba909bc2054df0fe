"""Builders and process stacks shared by several test files (imported; the fixtures are in tests/fixtures/)."""
