"""Provides a run directory's files: the directory itself, checkpoints, histories, its lock and the writer."""
