"""Provides the command line's work without the app: printers, the headless commands and races."""
