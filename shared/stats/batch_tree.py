"""Partial statistics of numbered batches, combined in one fixed binary tree: bit-identical for any split.

Floating-point merges are not associative: a job that folds batches 0..B-1 left
to right and a job split into shards, each folding its own batches and then
merged, agree only to rounding. A statistic that amplifies rounding (a matrix
square root of a nearly singular covariance, in the Fréchet distance) then
differs in the ninth digit. So batch statistics are combined in the tree that
the batch numbers fix: node (level l, position p) holds batches p 2^l ..
(p + 1) 2^l - 1, and is merge(node (l-1, 2p), node (l-1, 2p+1)), or the one
child that holds batches when the other lies past the last batch. A stream of
batches keeps at most one node per level (a binary counter: two sibling nodes
merge as soon as both are there); a shard holding batches lo..hi-1 keeps the
largest whole nodes inside its range; the union of the shards' nodes
collapses to the same root, merge for merge, as one stream of all batches.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Protocol, TypeVar

from scalespace import ScalespaceError

FORMAT = "scalespace.batch-tree/1"


class Mergeable(Protocol):
    def merge(self, other: Any) -> Any: ...


T = TypeVar("T", bound=Mergeable)


class BatchTree(Generic[T]):
    """Values of numbered batches (anything with `merge(other) -> new`), merged in the batch numbers' fixed tree."""

    def __init__(self) -> None:
        #: (level, position) -> the merged value of batches position 2^level .. (position + 1) 2^level - 1
        self.nodes: dict[tuple[int, int], T] = {}

    def add(self, batch: int, value: T) -> None:
        """The value of one batch; merges it up with every sibling node already here."""
        if batch < 0:
            raise ScalespaceError(f"batch: {batch} is negative; batches are numbered from 0")
        if any(_covers(lv, p, batch) for lv, p in self.nodes):
            raise ScalespaceError(f"batch: {batch} is already in the tree; add each batch once")
        self._insert(0, int(batch), value)

    def update(self, other: BatchTree[T]) -> None:
        """Take in another tree's nodes (another shard's batches, none of them here)."""
        for (level, pos), value in other.nodes.items():  # in any order: a node is a function of its batches
            if any(_overlaps(level, pos, lv, p) for lv, p in self.nodes):
                raise ScalespaceError(f"batch tree: batches from {pos << level} are in both trees; merge each shard once")
            self._insert(level, pos, value)

    def _insert(self, level: int, pos: int, value: T) -> None:
        """A whole node; merged with its sibling while that is here (the left one's merge, always)."""
        while (level, pos ^ 1) in self.nodes:
            sibling = self.nodes.pop((level, pos ^ 1))
            value = sibling.merge(value) if pos & 1 else value.merge(sibling)
            level, pos = level + 1, pos >> 1
        self.nodes[(level, pos)] = value

    def batches(self) -> int:
        """How many batches the tree holds."""
        return sum(1 << level for level, _ in self.nodes)

    def result(self) -> T | None:
        """The root: every batch merged in the fixed tree (None when empty). The nodes stay as they are."""
        if not self.nodes:
            return None
        last = max(((pos + 1) << level) - 1 for level, pos in self.nodes)
        return self._node(last.bit_length(), 0)

    def _node(self, level: int, pos: int) -> T | None:
        if (level, pos) in self.nodes:
            return self.nodes[(level, pos)]
        if level == 0:
            return None
        left, right = self._node(level - 1, 2 * pos), self._node(level - 1, 2 * pos + 1)
        if left is None or right is None:
            return left if right is None else right
        return left.merge(right)

    def to_dict(self, value_to_dict: Callable[[T], Any]) -> dict[str, Any]:
        return {"format": FORMAT, "nodes": [{"level": lv, "pos": p, "value": value_to_dict(v)}
                                            for (lv, p), v in sorted(self.nodes.items())]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], value_from_dict: Callable[[Any], T]) -> BatchTree[T]:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ScalespaceError(f"batch tree: format must be {FORMAT!r}; pass BatchTree.to_dict() output")
        out: BatchTree[T] = cls()
        for node in d["nodes"]:
            out.nodes[(int(node["level"]), int(node["pos"]))] = value_from_dict(node["value"])
        return out


def _covers(level: int, pos: int, batch: int) -> bool:
    return pos << level <= batch < (pos + 1) << level


def _overlaps(l1: int, p1: int, l2: int, p2: int) -> bool:
    return p1 << l1 < (p2 + 1) << l2 and p2 << l2 < (p1 + 1) << l1


__all__ = ["BatchTree"]
