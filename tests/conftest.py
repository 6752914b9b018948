"""Shared pytest setup: headless matplotlib (Agg) before anything imports pyplot."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
