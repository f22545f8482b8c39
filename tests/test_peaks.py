"""The peak of a training step at any batch, replayed from three traced steps (cnncost.trace.peaks)."""
import pytest

from cnncost.trace.memory import FIT_BATCHES, BatchPeaks
from cnncost.trace.peaks import AffinePeaks


@pytest.fixture(scope="module")
def peaks():
    """resnet18 at 64 px, bf16 autocast, SGD, CUDA's 512-byte blocks; the FIT_BATCHES steps traced."""
    found = BatchPeaks("resnet18", size=64, dtype="bf16", allocator="cuda")
    assert found.replayed() is not None
    return found


@pytest.mark.parametrize("batch", [2, 3, 37, 100, 1000])
def test_replayed_peak_is_the_traced_peak(peaks, batch):
    assert batch not in FIT_BATCHES
    assert peaks.replayed().peak(batch) == peaks.peak(batch)  # peak() traces the step at this batch


def test_largest_batch_is_found_from_the_three_fitted_steps_alone(peaks):
    limit = (peaks.peak(100) + peaks.peak(101)) // 2
    fresh = BatchPeaks("resnet18", size=64, dtype="bf16", allocator="cuda")
    assert fresh.largest(limit) == 100
    assert sorted(fresh.reports) == sorted(FIT_BATCHES)  # no other step traced


def test_sizes_that_are_not_affine_in_the_batch_give_no_model():
    # storage 7 holds batch x 100 bytes; storage 8 holds batch^2 bytes (affine on two batches, not on three)
    steps = {b: [(7, 100 * b), (8, b * b), (8, -1), (7, -1)] for b in (2, 4, 8)}
    assert AffinePeaks.fit(steps, 1) is None
    steps = {b: [(7, 100 * b), (8, 10 * b + 4), (8, -1), (7, -1)] for b in (2, 4, 8)}
    model = AffinePeaks.fit(steps, 1)
    assert model.peak(5) == 100 * 5 + 10 * 5 + 4  # both live after the second allocation


def test_a_different_order_of_allocations_and_frees_gives_no_model():
    steps = {2: [(1, 20), (1, -1), (2, 40)], 4: [(1, 40), (2, 80), (1, -1)], 8: [(1, 80), (1, -1), (2, 160)]}
    assert AffinePeaks.fit(steps, 1) is None


def test_block_rounding_and_reused_addresses():
    # address 5 is freed and reused by a new storage: two storages, one after the other
    steps = {b: [(5, 1000 * b), (5, -1), (5, 300 * b), (9, 10)] for b in (1, 2, 3)}
    model = AffinePeaks.fit(steps, 512)
    # at batch 4: 4000 bytes -> 4096 (8 blocks); then 1200 -> 1536 and 10 -> 512 live together: 2048
    assert model.peak(4) == 4096
    assert AffinePeaks.fit(steps, 1).peak(4) == 4000
