"""Provides the Textual app: setup screen, live dashboard, parameter and prediction viewers."""
