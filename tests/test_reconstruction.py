"""depthlib.reconstruction: one rendered scan fused and scored against the renderer's surface."""
import math

import pytest
import torch

from depthlib.data import write_dtu_like
from depthlib.models import MVSNet
from depthlib.reconstruction import FUSION_DEFAULTS, score_scan


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtu")
    return write_dtu_like(root, n_scans=1, n_views=6, height=64, width=96, n_lights=1, seed=0,
                          scan_ids=[9], splits={"test": [9]})


def test_exact_depth_fuses_onto_the_true_surface(scan_root):
    scores = score_scan(scan_root, "scan9", model=None, n_depths=8)
    assert scores["points"] > 100
    # 16 x 24 depth maps: the fused points lie within a couple of mm of the surface; against the
    # surface of another scene (data_seed 1; only the table is shared) they are far off
    assert scores["accuracy"] < 2.0
    right, wrong = (score_scan(scan_root, "scan9", model=None, n_depths=8, data_seed=seed,
                               max_dist=None) for seed in (0, 1))
    assert wrong["accuracy"] > 5 * right["accuracy"]
    assert math.isfinite(scores["completeness"]) and scores["completeness"] > 0
    assert scores["overall"] == pytest.approx((scores["accuracy"] + scores["completeness"]) / 2)


def test_a_model_is_run_on_every_reference_view(scan_root):
    torch.manual_seed(0)
    model = MVSNet(refine=True)
    unfiltered = score_scan(scan_root, "scan9", model=model, n_depths=8, photometric_threshold=0.0,
                            min_views=0)
    assert unfiltered["points"] == 6 * 16 * 24      # every pixel of the 6 depth maps
    assert all(math.isfinite(unfiltered[key]) for key in ("accuracy", "completeness"))


def test_bad_arguments_are_named(scan_root):
    with pytest.raises(ValueError, match="unknown fusion thresholds.*min_view"):
        score_scan(scan_root, "scan9", min_view=3)
    with pytest.raises(FileNotFoundError, match="scan1"):
        score_scan(scan_root, "scan1")
    assert set(FUSION_DEFAULTS) == {"photometric_threshold", "pixel_threshold", "depth_threshold",
                                    "min_views"}
