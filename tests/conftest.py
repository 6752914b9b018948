"""Shared pytest setup: headless matplotlib (Agg) before anything imports pyplot; tests marked
``cuda`` skip cleanly on machines without a CUDA GPU (CI), and run under ``pytest -m cuda``."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if "cuda" in item.keywords]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check runs these on a GPU machine)")
    for item in marked:
        item.add_marker(skip)
