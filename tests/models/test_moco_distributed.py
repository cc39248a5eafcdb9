"""Shuffle-BN and the queue across two gloo processes (the 2-process runs of tasks/moco.py, interrupted and
resumed, are in tests/tasks/test_moco_run.py)."""

from __future__ import annotations

import pytest
import torch


def _shuffle_bn_worker(rank: int, world: int, store_path: str, result_path: str) -> None:
    import torch.distributed as dist

    from nda.distributed import concat_all_gather
    from nda.models.moco import MoCo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, world), rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = MoCo("tiny", in_channels=3, dim=8, queue_size=16).train()  # identical on both ranks
        x = torch.randn(4 * world, 3, 8, 8, generator=torch.Generator().manual_seed(1))[4 * rank: 4 * rank + 4]
        # a different generator on each rank: the permutation must still be rank 0's (broadcast)
        keys = model.encode_keys(x, generator=torch.Generator().manual_seed(10 + rank))
        model.dequeue_and_enqueue(concat_all_gather(keys))
        torch.save({"keys": keys, "queue": model.queue.clone(), "ptr": int(model.queue_ptr)}, f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_shuffle_bn_across_two_processes_matches_a_hand_made_shuffle(tmp_path):
    """Train-mode shuffle-BN on 2 gloo processes: each key equals the key encoder applied (batch statistics of
    the slice) to the slice of rank 0's permutation that holds it, un-permuted back to its own rank and row."""
    import copy

    import torch.multiprocessing as mp
    import torch.nn.functional as F

    from nda.models.moco import MoCo

    world = 2
    mp.spawn(_shuffle_bn_worker, args=(world, str(tmp_path / "store"), str(tmp_path / "out")), nprocs=world, join=True)
    parts = [torch.load(f"{tmp_path / 'out'}.{r}") for r in range(world)]
    torch.manual_seed(0)
    model = MoCo("tiny", in_channels=3, dim=8, queue_size=16).train()
    x_all = torch.randn(4 * world, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(4 * world, generator=torch.Generator().manual_seed(10))  # rank 0's draw
    expected = torch.empty(4 * world, 8)
    for r in range(world):  # rank r encodes x_all[perm[4r:4r+4]] with that slice's BN statistics
        enc = copy.deepcopy(model.key_encoder)
        expected[perm[4 * r: 4 * r + 4]] = F.normalize(enc(x_all[perm[4 * r: 4 * r + 4]]), dim=1)
    got = torch.cat([p["keys"] for p in parts])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # not a no-op: per-rank BN statistics without the shuffle give other keys
    plain = torch.cat([F.normalize(copy.deepcopy(model.key_encoder)(x_all[4 * r: 4 * r + 4]), dim=1) for r in range(world)])
    assert not torch.allclose(got, plain, atol=1e-4)
    # every rank enqueued the same gathered keys, in rank order
    assert parts[0]["ptr"] == parts[1]["ptr"] == 8
    assert torch.equal(parts[0]["queue"], parts[1]["queue"])
    torch.testing.assert_close(parts[0]["queue"][:8], got)
