"""The ``Example:`` in the library's docstrings run and print what they say (STYLE: each public
function has a tiny doctest; an example nobody runs goes stale, as render's did)."""
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import depthlib

MODULES = sorted(info.name for info in pkgutil.walk_packages(depthlib.__path__, "depthlib.")
                 if ">>>" in Path(importlib.util.find_spec(info.name).origin).read_text(encoding="utf-8"))


def test_the_library_has_docstring_examples():
    assert {"depthlib.geometry", "depthlib.fusion", "depthlib.data.raycast"} <= set(MODULES), MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_and_print_what_they_say(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"
