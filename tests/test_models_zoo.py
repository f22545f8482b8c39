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
    "keypointrcnn_resnet50_fpn": "keypoint head runs on every detection the weights keep",
    "maskrcnn_resnet50_fpn_v2": "mask head runs on every detection the weights keep",
}


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
    result = count_source(load(name))
    assert result.input_shapes and result.device in ("meta", "cpu")
    assert not result.unsupported, result.unsupported
    if "num_params" in meta:
        assert result.total("params") == meta["num_params"]
    if "_ops" in meta:
        assert round(result.core_macs / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-9)

