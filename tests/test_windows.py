import numpy as np
import pytest

from vidrefine.errors import BadInput
from vidrefine.plan.windows import WindowPlan, slice_windows


def numbered_chunks(n: int, chunk: int):
    """Frames whose pixels hold their own index, in chunks, with pts = 3 * index."""
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk))
        frames = np.broadcast_to(idx[:, None, None, None] % 256, (len(idx), 2, 3, 3)).astype(
            np.uint8
        )
        yield frames, idx * 3


@pytest.mark.parametrize("n", [1, 2, 48, 49, 50, 85, 86, 200, 301])
def test_windows_cover_every_frame_in_order_when_sliced(n: int) -> None:
    plan = WindowPlan(13, 4)
    windows = list(slice_windows(numbered_chunks(n, 7), plan, plan.windows(n)))
    assert len(windows) == plan.count(n)
    assert windows[-1].is_last and not any(w.is_last for w in windows[:-1])
    seen = {}
    for w in windows:
        assert w.frames.shape[0] == plan.frames
        assert w.start_frame == w.index * plan.stride
        for i in range(w.real):
            seen[w.start_frame + i] = int(w.frames[i, 0, 0, 0])
        np.testing.assert_array_equal(w.pts, 3 * (w.start_frame + np.arange(w.real)))
        # padding repeats the last real frame
        assert (w.frames[w.real :] == w.frames[w.real - 1]).all()
    assert sorted(seen) == list(range(n))
    assert all(v == k % 256 for k, v in seen.items())


def test_window_geometry_matches_the_latent_grid_when_default() -> None:
    plan = WindowPlan(13, 4)
    assert plan.frames == 49 and plan.stride == 36 and plan.overlap_frames == 13
    # latent j >= 1 of window k+1 covers frames start+4j-3..start+4j, the same 4 frames as
    # latent j + 9 of window k
    for j in range(1, 4):
        first_next = plan.stride + 4 * j - 3
        first_prev = 4 * (j + 9) - 3
        assert first_next == first_prev


def test_fusion_and_crossfade_weights_ramp_when_overlapping() -> None:
    plan = WindowPlan(13, 4)
    w = plan.latent_fusion_weights()
    assert w[0] == 0 and np.all(np.diff(w[1:]) < 0) and np.all((w >= 0) & (w <= 1))
    c = plan.crossfade_weights()
    assert len(c) == plan.overlap_frames and np.all(np.diff(c) > 0) and c[0] > 0 and c[-1] < 1


@pytest.mark.parametrize("window,overlap", [(1, 0), (13, 0), (13, 13), (4, 5)])
def test_plan_refuses_when_overlap_is_impossible(window: int, overlap: int) -> None:
    with pytest.raises(BadInput):
        WindowPlan(window, overlap)


SHOT_CASES = [(110, (0, 37, 80)), (60, (0, 12)), (49, (0, 13)), (100, (0, 49, 50 + 36))]


@pytest.mark.parametrize(("n", "starts"), SHOT_CASES)
def test_no_window_spans_a_cut_when_windows_are_planned_per_shot(n: int, starts) -> None:
    plan = WindowPlan(4, 2)  # 13 frames, stride 8
    windows = plan.windows(n, starts)
    ends = [*starts[1:], n]
    assert [w.index for w in windows] == list(range(len(windows)))
    for segment, (first, end) in enumerate(zip(starts, ends, strict=True)):
        own = [w for w in windows if w.segment == segment]
        assert len(own) == plan.count(end - first)
        assert own[0].start_frame == first and own[-1].stop_frame == end
        assert all(first <= w.start_frame < w.stop_frame <= end for w in own)
        assert all(
            b.start_frame - a.start_frame == plan.stride for a, b in zip(own, own[1:], strict=False)
        )
    assert plan.windows(n, (0,)) == plan.windows(n)


def kept_frames(windows, stride: int) -> list[int]:
    """The frame values the executor emits: a stride per window, all of a segment's last."""
    kept = []
    for w in windows:
        keep = w.real if w.is_last else stride
        kept.extend(int(v) for v in w.frames[:keep, 0, 0, 0])
    return kept


@pytest.mark.parametrize(("n", "starts"), SHOT_CASES)
def test_slicer_cuts_the_planned_shot_windows_and_every_frame_once_when_streamed(
    n: int, starts
) -> None:
    plan = WindowPlan(4, 2)
    planned = plan.windows(n, starts)
    cut = list(slice_windows(numbered_chunks(n, 5), plan, planned))
    assert [(w.index, w.start_frame, w.start_frame + w.real, w.segment) for w in cut] == [
        (w.index, w.start_frame, w.stop_frame, w.segment) for w in planned
    ]
    last = [
        w.index for w in planned if w is planned[-1] or planned[w.index + 1].segment != w.segment
    ]
    assert [w.index for w in cut if w.is_last] == last
    assert kept_frames(cut, plan.stride) == [i % 256 for i in range(n)]


@pytest.mark.parametrize("streamed", [95, 110, 125])
def test_every_frame_is_sliced_when_the_probe_miscounted(streamed: int) -> None:
    plan = WindowPlan(4, 2)
    planned = plan.windows(110, (0, 37, 80))  # the probe said 110 frames
    cut = list(slice_windows(numbered_chunks(streamed, 7), plan, planned))
    assert kept_frames(cut, plan.stride) == [i % 256 for i in range(streamed)]
    assert cut[-1].is_last and cut[-1].segment == 2
