"""Depth networks: ``densedepth`` (monocular, chapters 02-03), ``mvsnet`` (multi-view, chapters 07-09) and
``casmvsnet`` (the cascade, chapter 12)."""
from depthlib.models import densedepth
from depthlib.models import mvsnet
from depthlib.models import casmvsnet
from depthlib.models.densedepth import (
    DenseDepth, DenseNetEncoder, DenseDepthDecoder, UpBlock, densedepth169, densedepth121, densedepth_small,
    small_densenet, predict_depth, upsample_half, load_densedepth
)
from depthlib.models.mvsnet import (
    MVSNet, FeatureNet, CostRegNet, RefineNet, variance_cost_volume, depth_regression,
    photometric_confidence, standardize_image, plane_sweep_depth, load_mvsnet
)
from depthlib.metrics import evaluate_mvsnet  # evaluated beside the metrics it pools
from depthlib.models.casmvsnet import (
    CasMVSNet, CascadeStage, PAPER_STAGES, FeaturePyramid, stage_hypotheses, casmvsnet_loss, CasMVSNetTask,
    stages_from_metadata, evaluate_casmvsnet, load_casmvsnet, init_from_mvsnet
)

__all__ = [
    "densedepth", "mvsnet", "casmvsnet", "DenseDepth", "DenseNetEncoder", "DenseDepthDecoder", "UpBlock",
    "densedepth169", "densedepth121", "densedepth_small", "small_densenet", "predict_depth", "upsample_half",
    "load_densedepth", "MVSNet", "FeatureNet", "CostRegNet", "RefineNet", "variance_cost_volume",
    "depth_regression", "photometric_confidence", "standardize_image", "plane_sweep_depth",
    "evaluate_mvsnet", "load_mvsnet", "CasMVSNet", "CascadeStage", "PAPER_STAGES", "FeaturePyramid",
    "stage_hypotheses", "casmvsnet_loss", "CasMVSNetTask", "stages_from_metadata", "evaluate_casmvsnet",
    "load_casmvsnet", "init_from_mvsnet"
]
