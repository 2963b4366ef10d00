"""Provides the data sets: synthetic, MNIST-type IDX files and your own CSV, with their memory cost."""
