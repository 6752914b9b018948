"""depthlib: learned depth estimation built step by step (the library behind depth-book).

One module per idea, taught in the chapter named in brackets: ``geometry`` (01, 07),
``data`` (01), ``models`` (02, 03, 08, 12), ``losses`` (04, 09), ``metrics`` (06, 09),
``fusion`` (10), ``train`` (05, 08, 11), ``viz`` (all), ``profiles`` (all).

Import the module you use, as the chapters do: ``from depthlib import models`` or
``from depthlib.models import MVSNet``. ``import depthlib`` alone loads none of them (and so no
PyTorch): ``python -m depthlib --help`` and the chapter runner start in a fraction of a second.
"""
__version__ = "0.1.0"
__all__ = ["geometry", "data", "models", "losses", "metrics", "fusion", "train", "viz", "profiles", "__version__"]
