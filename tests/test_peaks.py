"""The peak of a training step at any batch, replayed from three traced steps (cnncost.trace.peaks)."""
import pytest

from cnncost.trace.memory import CATEGORIES, FIT_BATCHES, BatchPeaks
from cnncost.trace.peaks import FREED, MOVED, AffinePeaks


@pytest.fixture(scope="module")
def peaks():
    """resnet18 at 64 px, bf16 autocast, SGD, CUDA's 512-byte blocks; the FIT_BATCHES steps traced."""
    found = BatchPeaks("resnet18", size=64, dtype="bf16", allocator="cuda")
    assert found.replayed() is not None
    return found


@pytest.mark.parametrize("batch", [2, 3, 16, 37, 100, 1000])
def test_replayed_peak_is_the_traced_peak(peaks, batch):
    assert batch not in FIT_BATCHES
    replayed = peaks.at_peak(batch)
    assert replayed["peak_bytes"] == peaks.replayed().peak(batch)
    traced = peaks.report(batch).totals  # the step at this batch, traced
    assert replayed == {k: traced[k] for k in ("peak_bytes", *(f"peak_{c}_bytes" for c in CATEGORIES))}


def test_largest_batch_is_found_from_the_two_fitted_steps_alone(peaks):
    limit = (peaks.peak(100) + peaks.peak(101)) // 2
    fresh = BatchPeaks("resnet18", size=64, dtype="bf16", allocator="cuda")
    assert fresh.largest(limit) == 100
    assert sorted(fresh.reports) == sorted(FIT_BATCHES)  # no other step traced


def step(b, second):
    """Events of a made-up step: storage 7 of b x 100 bytes, then storage 8 of second(b) bytes, both freed."""
    return [(7, 100 * b, "activations"), (8, second(b), "temporaries"), (8, FREED, None), (7, FREED, None)]


def test_two_steps_suffice_when_every_storage_is_constant_or_proportional():
    model = AffinePeaks.fit({b: step(b, lambda b: 4096) for b in (4, 8)}, 1)
    assert model.peak(5) == 100 * 5 + 4096  # both live after the second allocation
    assert model.at_peak(5) == {"peak": 100 * 5 + 4096, "activations": 500, "temporaries": 4096}


def test_sizes_that_are_not_affine_in_the_batch_give_no_model():
    # storage 8 holds batch^2 bytes: proportional on no two batches, affine on two but not on three
    assert AffinePeaks.fit({b: step(b, lambda b: b * b) for b in (2, 4)}, 1) is None
    assert AffinePeaks.fit({b: step(b, lambda b: b * b) for b in (2, 4, 8)}, 1) is None
    # batch x 10 + 4 bytes: neither constant nor proportional, so two steps are not enough; three fit it
    assert AffinePeaks.fit({b: step(b, lambda b: 10 * b + 4) for b in (2, 4)}, 1) is None
    model = AffinePeaks.fit({b: step(b, lambda b: 10 * b + 4) for b in (2, 4, 8)}, 1)
    assert model.peak(5) == 100 * 5 + 10 * 5 + 4


def test_a_different_order_of_allocations_and_frees_gives_no_model():
    steps = {2: [(1, 20, "a"), (1, FREED, None), (2, 40, "a")], 4: [(1, 40, "a"), (2, 80, "a"), (1, FREED, None)]}
    assert AffinePeaks.fit(steps, 1) is None


def test_block_rounding_reused_addresses_and_moves():
    # address 5 is freed and reused by a new storage: two storages, one after the other; the second becomes a
    # gradient after the third storage appears
    steps = {b: [(5, 1000 * b, "activations"), (5, FREED, None), (5, 300 * b, "temporaries"), (9, 10, "params"),
                 (5, MOVED, "grads")] for b in (1, 2)}
    model = AffinePeaks.fit(steps, 512)
    # at batch 4: 4000 bytes -> 4096 (8 blocks); then 1200 -> 1536 and 10 -> 512 live together: 2048
    assert model.peak(4) == 4096 and AffinePeaks.fit(steps, 1).peak(4) == 4000
    # at batch 40: 40,000 -> 40,448 alone; 12,000 -> 12,288 + 512 = 12,800 together: the first is the peak
    assert model.at_peak(40) == {"peak": 40448, "activations": 40448, "grads": 0, "params": 0, "temporaries": 0}
