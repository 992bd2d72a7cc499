"""Sweeps, cluster launch scripts and a local multi-process launcher (see README.md)."""
