"""A rank that vanishes (a crash, a kill, a machine gone) is reported by the others as one
RankLost line, not a gloo traceback: two real processes, one exits right after joining.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from tests.distributed.harness import fork_ranks, free_port


def worker(rank: int, port: int, out: str) -> None:
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank)}
    os.environ |= {"WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
    from vidrefine.pipeline.rank_link import Link
    from vidrefine.runtime.distributed import RankLost, barrier, init_distributed

    init_distributed("cpu")
    if rank == 1:
        os._exit(0)  # gone without leaving the group
    seen = {}
    for name, wait in (
        ("recv", lambda: Link(None).recv((4,), torch.float32, 1)),
        ("barrier", barrier),
    ):
        try:
            wait()
            seen[name] = "returned"
        except RankLost as exc:
            seen[name] = str(exc)
    Path(out).write_text(json.dumps(seen))
    os._exit(0)  # the group is broken: nothing to leave cleanly


def test_lost_rank_is_one_clear_line_when_a_peer_vanishes_mid_run(tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    fork_ranks(worker, (free_port(), str(out)), 2)
    seen = json.loads(out.read_text())
    for name in ("recv", "barrier"):
        assert seen[name].startswith("lost contact with another rank ("), seen
        assert "run the same command again" in seen[name] and "\n" not in seen[name]
