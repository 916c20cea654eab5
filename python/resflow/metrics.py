"""Ranking metrics on numpy arrays, computed by resflow's metrics library (the same code
that evaluates training): AUC, group AUC and Weighted Recall@K. The GIL is released while
they run; bad inputs (lengths that differ, NaN scores, labels other than 0/1) raise
``resflow.ResflowError`` with the library's message."""

import numpy as np

from . import _native

__all__ = ["auc", "gauc", "weighted_recall_at_k"]


def _f32(name, a):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _groups(a):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"groups must be one-dimensional, got shape {a.shape}")
    if a.dtype.kind in "iu":
        if a.size and a.min() < 0:
            raise ValueError("groups must be non-negative integers")
        return np.ascontiguousarray(a, dtype=np.uint64)
    # Any other values (strings, objects): numbered by first appearance.
    _, inverse = np.unique(a, return_inverse=True)
    return np.ascontiguousarray(inverse, dtype=np.uint64)


def auc(scores, labels):
    """The ROC AUC of ``scores`` against 0/1 ``labels`` (ties count one half)."""
    return _native.auc(_f32("scores", scores), _f32("labels", labels))


def gauc(scores, labels, groups, weight="impressions"):
    """Group AUC: the AUC inside each group, averaged with weights by ``"impressions"``
    (rows) or ``"clicks"`` (positives); groups of one class are skipped. Returns a dict
    ``{"value", "groups_used", "groups_total"}``."""
    value, used, total = _native.gauc(_f32("scores", scores), _f32("labels", labels), _groups(groups), weight)
    return {"value": value, "groups_used": used, "groups_total": total}


def weighted_recall_at_k(scores, weights, groups, k=(10,), averaging="macro"):
    """Weighted Recall@K: per group, the share of the items' weight (e.g. orders) that
    the top K by score hold, averaged over groups with positive weight (``"macro"``) or
    pooled (``"micro"``). ``k`` is an int or a sequence of ints. Returns a dict
    ``{"values": {K: WR@K}, "groups_used", "groups_total"}``."""
    ks = [int(k)] if np.isscalar(k) else [int(x) for x in k]
    values, used, total = _native.weighted_recall_at_k(
        _f32("scores", scores), _f32("weights", weights), _groups(groups), ks, averaging
    )
    return {"values": dict(values), "groups_used": used, "groups_total": total}
