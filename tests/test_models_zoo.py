"""Every model torchvision ships, by name, against torchvision's own metadata (an independent source).

torchvision publishes each model's `num_params` and `_ops` (GMACs of conv + linear, rounded to 3 decimals, measured
by pytorch/vision #6936 at: the crop size for classification, 520 x 520 for segmentation, a 16-frame clip at the
crop size for video, two 512 x 512 images for optical flow, a list of images for detection). One trace per model
(meta device; the CPU where an op has no meta kernel), weights never loaded. The detection models run on the
CPU and take most of the time: `-m "not slow"` leaves them out.
"""
import pytest
import torchvision

from cnncost.trace.counter import count_source
from cnncost.trace.models import load, torchvision_meta, torchvision_tasks

# Detection heads after the region proposal network run on as many proposals and detections as the trained
# weights keep for the measured image; with no weights the count differs (e.g. fasterrcnn_mobilenet_v3_large_320_fpn:
# torchvision's 0.719 GMACs is the backbone + RPN alone, 0 proposals kept by its 0.05 score threshold).
DATA_DEPENDENT = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": "torchvision's _ops: backbone + RPN only (no proposal kept)",
    "fasterrcnn_mobilenet_v3_large_fpn": "torchvision's _ops: backbone + RPN only (no proposal kept)",
}

# The mask and keypoint heads run once per detection. Our rule runs them on the model's maximum (100 per image);
# torchvision's _ops ran them on however many its measured image kept, which these counts reproduce exactly.
DETECTIONS_IN_TORCHVISION_OPS = {"maskrcnn_resnet50_fpn": 0, "maskrcnn_resnet50_fpn_v2": 100,
                                 "keypointrcnn_resnet50_fpn": 1}
# maskrcnn_resnet50_fpn's mask head per detection: four 3x3 convs 256->256 on 14x14 (4 * 14*14*256*256*9 =
# 462,422,016), a 2x2 transposed conv 256->256 from 14x14 (14*14*256*256*4 = 51,380,224) and a 1x1 conv 256->91
# at 28x28 (28*28*256*91 = 18,264,064): 532,066,304 MACs
MASK_HEAD_MACS = 4 * 14 * 14 * 256 * 256 * 9 + 14 * 14 * 256 * 256 * 4 + 28 * 28 * 256 * 91


def case(name: str):
    """A model as a test case: detection models run on the CPU (no meta kernel for nonzero/nms), so are slow."""
    marks = [pytest.mark.slow] if torchvision_tasks()[name] == "detection" else []
    if name in DATA_DEPENDENT:
        marks.append(pytest.mark.xfail(reason=DATA_DEPENDENT[name], strict=True))
    return pytest.param(name, marks=marks)


ALL = torchvision.models.list_models()


def test_every_task_is_covered():
    tasks = torchvision_tasks()
    assert set(tasks) == set(ALL)
    assert set(tasks.values()) == {"classification", "segmentation", "detection", "video", "optical_flow",
                                   "quantized"}


@pytest.mark.parametrize("name", [case(n) for n in ALL])
def test_traced_model_matches_torchvision_metadata(name):
    meta = torchvision_meta(name)
    kept = DETECTIONS_IN_TORCHVISION_OPS.get(name)
    result = count_source(load(name, detections=max(kept, 1)) if kept is not None else load(name))
    assert result.input_shapes and result.device in ("meta", "cpu")
    assert not result.unsupported, result.unsupported
    if "num_params" in meta:
        assert result.total("params") == meta["num_params"]
    if "_ops" in meta:
        macs = result.core_macs - (MASK_HEAD_MACS if kept == 0 else 0)  # no detection: no mask head at all
        assert round(macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)


@pytest.mark.slow
def test_the_mask_head_costs_the_same_for_every_detection():
    one, two = (count_source(load("maskrcnn_resnet50_fpn", detections=n)).core_macs for n in (1, 2))
    assert two - one == MASK_HEAD_MACS

