"""Shared pytest setup: headless matplotlib (Agg) before anything imports pyplot; tests marked
``cuda`` skip cleanly on machines without a CUDA GPU (CI), and run under ``pytest -m cuda``; all
other tests see no GPU, wherever they run."""
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


@pytest.fixture(autouse=True)
def cpu_suite_unless_marked_cuda(request, monkeypatch):
    """Every test not marked ``cuda`` is the CPU suite, on any machine: CUDA is hidden from it
    (``torch.cuda.is_available()`` False here, ``CUDA_VISIBLE_DEVICES`` empty for the processes it
    starts). Without this, ``make test`` on a GPU machine would test something CI never sees: the
    Trainer's default device would become CUDA, TF32 would loosen CPU-measured tolerances, and the
    two-process gloo test would put rank 1 on a second GPU. The GPU path has its own tests
    (tests/test_cuda.py, ``make gpu-check``)."""
    if "cuda" not in request.keywords:
        import torch

        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    yield
