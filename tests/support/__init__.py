"""Helpers shared by the integration and end-to-end tests (no mocks: they drive real processes)."""
