"""depthlib: learned depth estimation built step by step (the library behind depth-book).

One module per idea, taught in the chapter named in brackets: ``geometry`` (01, 07),
``data`` (01), ``models`` (02, 03, 08), ``losses`` (04, 09), ``metrics`` (06, 09),
``fusion`` (10), ``train`` (05, 08, 11), ``viz`` (all), ``profiles`` (all). Submodules load on
first use, so ``import depthlib`` stays fast.
"""
import importlib

__version__ = "0.1.0"
_SUBMODULES = ("geometry", "data", "models", "losses", "metrics", "fusion", "train", "viz", "profiles")
__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'depthlib' has no attribute {name!r}")
