"""Provides whole runs: starting and resuming them, in a child process or several, stopping and comparing them."""
