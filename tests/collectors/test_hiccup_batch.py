"""The hiccup meter records its overshoots a batch at a time: the same histogram as recording each
as it came, and the same sample lines the collector reads."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickscope.collectors.session.hdr import HIGHEST_NS, new_histogram
from tickscope.collectors.side.hiccup import SampleBatch

EXACT = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
RESOLUTION_NS = 1_000_000
LENGTH = st.one_of(st.integers(0, 3 * RESOLUTION_NS), st.integers(0, 2 * HIGHEST_NS))


@EXACT
@given(st.lists(st.lists(LENGTH, max_size=120), max_size=5))
def test_a_batch_records_and_prints_what_each_sample_would_have(batches):
    hist, ref, out = new_histogram(), new_histogram(), io.StringIO()
    batch = SampleBatch(hist, RESOLUTION_NS)
    expected_lines, t = [], 10**12
    for lengths in batches:
        samples = []
        for length in lengths:
            t += length + 7
            batch.ends.append(t)
            batch.lengths.append(length)
            overshoot = max(0, length - RESOLUTION_NS)
            ref.record_value(overshoot)  # refuses what is past the layout, as the batch does
            samples.append(f"{t}:{overshoot}")
        batch.flush(out)
        if samples:
            expected_lines.append(" ".join(["s", *samples]))
        assert hist.encode() == ref.encode()
        assert (hist.total_count, hist.min_value, hist.max_value) == (
            ref.total_count,
            ref.min_value,
            ref.max_value,
        )
    assert out.getvalue().splitlines() == expected_lines
    assert batch.ends == batch.lengths == []
