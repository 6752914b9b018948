"""Depth networks: ``densedepth`` (monocular, chapters 02-03), ``mvsnet`` (multi-view, chapters 07-09) and
``casmvsnet`` (the cascade, chapter 12).

``from depthlib.models import DenseDepth`` loads torchvision on first use, not at package import.
"""
import importlib

_EXPORTS = {
    "densedepth": ("DenseDepth", "DenseNetEncoder", "DenseDepthDecoder", "UpBlock",
                   "densedepth169", "densedepth121", "densedepth_small", "small_densenet",
                   "predict_depth", "load_densedepth"),
    "mvsnet": ("MVSNet", "FeatureNet", "CostRegNet", "RefineNet", "variance_cost_volume", "depth_regression",
               "photometric_confidence", "standardize_image", "plane_sweep_depth", "evaluate_mvsnet",
               "load_mvsnet"),
    "casmvsnet": ("CasMVSNet", "CascadeStage", "PAPER_STAGES", "FeaturePyramid", "stage_hypotheses",
                  "casmvsnet_loss", "CasMVSNetTask", "stages_from_metadata", "evaluate_casmvsnet", "load_casmvsnet",
                  "init_from_mvsnet"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [*_EXPORTS, *_MODULE_OF]


def __getattr__(name):
    if name in _EXPORTS:
        return importlib.import_module(f".{name}", __name__)
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module 'depthlib.models' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
