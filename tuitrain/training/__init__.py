"""Provides training: the network, the loop, what steers it and what looks inside it."""
