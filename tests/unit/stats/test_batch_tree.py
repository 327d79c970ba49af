"""The batch tree: batch statistics merged in the order the batch numbers fix, the same for any split."""

from __future__ import annotations

import random

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.stats.batch_tree import BatchTree
from scalespace.stats.moments import Moments


class Sum:
    """A float sum: merging is not associative, so the order of merges shows in the last bits."""

    def __init__(self, value: float, batches: tuple[int, ...]):
        self.value, self.batches = value, batches

    def merge(self, other: Sum) -> Sum:
        return Sum(self.value + other.value, self.batches + other.batches)


VALUES = [1e16, 1.0, -1e16, 3.3, 1e-3, 7.1e15, 2.5, -7.1e15, 0.1, 0.7, 1e8, -1e8, 5.5]


def _stream(batches: list[int]) -> BatchTree[Sum]:
    tree: BatchTree[Sum] = BatchTree()
    for b in batches:
        tree.add(b, Sum(VALUES[b], (b,)))
    return tree


def _split(cuts: list[int]) -> BatchTree[Sum]:
    """The batches cut into shards at `cuts`, each streamed on its own, then the shards' trees joined."""
    edges = [0, *cuts, len(VALUES)]
    parent: BatchTree[Sum] = BatchTree()
    shards = [_stream(list(range(a, b))) for a, b in zip(edges, edges[1:])]
    random.Random(len(cuts)).shuffle(shards)  # the order the shards arrive in does not matter either
    for shard in shards:
        parent.update(shard)
    return parent


def test_a_left_fold_depends_on_the_split_and_the_tree_does_not():
    whole = _stream(list(range(len(VALUES)))).result()
    assert whole.batches == tuple(range(len(VALUES)))  # every batch once, in order
    # the counterexample: folding shard by shard gives other bits than one fold over all batches
    left = sum(VALUES[1:], VALUES[0])
    halves = sum(VALUES[:5]) + sum(VALUES[5:])
    assert left != halves
    for cuts in ([], [1], [5], [3, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [6, 12], [4, 8, 9]):
        got = _split(cuts).result()
        assert got.value == whole.value and got.batches == whole.batches, cuts


def test_the_tree_keeps_one_node_a_level_and_the_largest_whole_nodes_of_a_shard():
    tree = _stream(list(range(13)))
    assert sorted(tree.nodes) == [(0, 12), (2, 2), (3, 0)]  # 13 = 8 + 4 + 1
    assert tree.batches() == 13
    assert sorted(_stream([3, 4, 5, 6, 7, 8]).nodes) == [(0, 3), (0, 8), (2, 1)]


def test_moments_merged_in_the_tree_are_bit_identical_for_any_split():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(5, 6, generator=g, dtype=torch.float64) * 10 ** k for k in range(-3, 6)]

    def tree_of(idx: list[int]) -> BatchTree[Moments]:
        t: BatchTree[Moments] = BatchTree()
        for b in idx:
            t.add(b, Moments.from_samples(batches[b], full=True))
        return t

    whole = tree_of(list(range(len(batches)))).result()
    parent = tree_of([0, 1, 2])
    parent.update(tree_of([5, 6, 7, 8]))
    parent.update(tree_of([3, 4]))
    split = parent.result()
    assert torch.equal(split.mean(), whole.mean()) and torch.equal(split.cov(), whole.cov())
    # a plain left fold of the shards' merged moments differs in the last bits
    folded = tree_of([0, 1, 2]).result().merge(tree_of([3, 4]).result()).merge(tree_of([5, 6, 7, 8]).result())
    assert not torch.equal(folded.cov(), whole.cov())


def test_a_batch_twice_or_overlapping_shards_are_refused_and_json_round_trips():
    tree = _stream([0, 1, 2])
    with pytest.raises(ScalespaceError, match="batch: 1 is already in the tree"):
        tree.add(1, Sum(0.0, (1,)))
    with pytest.raises(ScalespaceError, match="batches from 2 are in both trees"):
        tree.update(_stream([2, 3]))
    with pytest.raises(ScalespaceError, match="batch: -1 is negative"):
        tree.add(-1, Sum(0.0, ()))
    data = _stream([3, 4, 5]).to_dict(lambda s: {"v": s.value, "b": list(s.batches)})
    back = BatchTree.from_dict(data, lambda d: Sum(d["v"], tuple(d["b"])))
    assert sorted(back.nodes) == [(0, 3), (1, 2)] and back.result().value == _stream([3, 4, 5]).result().value
    with pytest.raises(ScalespaceError, match="format must be"):
        BatchTree.from_dict({"nodes": []}, dict)
    assert BatchTree().result() is None
