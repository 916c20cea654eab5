"""resflow: the residual multi-task ranker (ResFlow) and its baselines, trained and served
on the CPU by a Rust engine.

    resflow.convert(input, out, spec=...)      CSV or Parquet -> a dataset of shards
    resflow.train(train_dir, eval_dir, config) -> the training report (a dict)
    model = resflow.Model.load(path)           a model file -> a scorer
    probs, fused = model.score(features)       numpy arrays (rows x tasks, rows)
    resflow.metrics.auc / gauc / weighted_recall_at_k

Long calls (conversion, training, scoring, metrics) release the GIL. Errors of the
libraries are raised as ``resflow.ResflowError`` with the library's message; arguments of
the wrong shape or type raise ``ValueError`` or ``TypeError`` before any work.
"""

import json
import os

import numpy as np

from . import _native, metrics
from ._native import ResflowError

__all__ = ["ResflowError", "Model", "convert", "train", "metrics"]

_U32_MAX = 2**32 - 1


def _spec_json(spec):
    """A spec given as a dict, a JSON text or a path to a JSON file, as JSON text."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        return json.dumps(spec)
    if isinstance(spec, (str, os.PathLike)) and os.path.exists(spec):
        with open(spec, encoding="utf-8") as f:
            return f.read()
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        return spec
    raise TypeError("spec must be a dict, a JSON text or the path of a JSON file")


def convert(
    input,
    out,
    spec=None,
    layout=None,
    labels=None,
    strict=False,
    drop_funnel_violations=False,
    rows_per_shard=65536,
    vocab_from=None,
    raw_dense=False,
    quantiles=None,
):
    """Converts a CSV or Parquet file into a dataset directory ``out`` (which must not
    exist, or be empty), as ``resflow convert`` does.

    ``spec`` (a dict, a JSON text or a JSON file) says which column is what (see
    docs/shards.md); without it, ``layout`` must be ``"aliccp"`` or ``"aliexpress"``.
    ``labels`` maps tasks to label columns (``"click=ctr_label,conversion=cvr_label"``).
    ``vocab_from`` is a converted training set whose vocabularies, cut points and dense
    statistics are applied (for a test set). Returns the report as a dict.
    """
    if layout is None:
        layout = "csv" if spec is not None else None
    if layout is None:
        raise ValueError('give a spec, or layout="aliccp" or "aliexpress"')
    if isinstance(labels, dict):
        labels = ",".join(f"{t}={c}" for t, c in labels.items())
    report = _native.convert(
        os.fspath(input),
        os.fspath(out),
        layout,
        _spec_json(spec),
        labels,
        bool(strict),
        bool(drop_funnel_violations),
        int(rows_per_shard),
        None if vocab_from is None else os.fspath(vocab_from),
        bool(raw_dense),
        None if quantiles is None else int(quantiles),
    )
    return json.loads(report)


def train(train_dir, eval_dir=None, config=None, out=None, **options):
    """Trains a model on the dataset ``train_dir`` (evaluated on ``eval_dir`` after each
    epoch and at the end, if given), through the same training run as ``resflow train``,
    and returns its report as a dict: ``{"train": {steps, samples_per_s, ...}, "eval":
    {per-task AUC, GAUC, log loss, list metrics...}}``.

    ``config`` is the model configuration (a dict, a JSON text or a JSON file, as
    ``resflow train --config`` reads; default: the paper's ResFlow). ``out`` is the model
    file to write. ``options``: ``epochs``, ``threads``, ``checkpoint_dir``,
    ``checkpoint_every``, ``eval_every``, ``resume``.
    """
    report = _native.train(
        os.fspath(train_dir),
        None if eval_dir is None else os.fspath(eval_dir),
        _spec_json(config),
        json.dumps({k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in options.items()}),
        None if out is None else os.fspath(out),
    )
    return json.loads(report)


def _columns(features):
    """A mapping of column name -> column from a dict, a pandas DataFrame or a pyarrow
    Table (or RecordBatch)."""
    if isinstance(features, dict):
        return features
    mod = type(features).__module__
    if mod.startswith("pandas"):
        return {c: features[c] for c in features.columns}
    if mod.startswith("pyarrow"):
        return {n: features.column(n) for n in features.column_names}
    raise TypeError("features must be a dict of arrays, a pandas DataFrame or a pyarrow Table")


def _ids(name, column, rows=None):
    """A single-valued field's column as contiguous uint32, checked."""
    if hasattr(column, "to_numpy") and type(column).__module__.startswith("pyarrow"):
        if column.null_count:
            raise ValueError(f"field {name!r}: null ids")
        column = column.to_numpy()
    a = np.asarray(column)
    if a.ndim != 1:
        raise ValueError(f"field {name!r}: ids must be one-dimensional, got shape {a.shape}")
    if rows is not None and len(a) != rows:
        raise ValueError(f"field {name!r}: {len(a)} rows, expected {rows}")
    if a.dtype.kind not in "iu":
        if a.size and a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.floor(a)):
            pass
        elif a.size:
            raise ValueError(f"field {name!r}: ids must be integers, got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > _U32_MAX):
        raise ValueError(f"field {name!r}: ids must be in [0, 2**32 - 1]")
    return np.ascontiguousarray(a, dtype=np.uint32)


def _bag(name, column, rows):
    """A bag column as (offsets uint64 of rows + 1, ids uint32). Accepts a tuple
    ``(offsets, ids)``, a sequence of per-row id sequences (a list, a pandas column of
    lists) or a pyarrow list array."""
    if isinstance(column, tuple) and len(column) == 2:
        offsets = np.ascontiguousarray(np.asarray(column[0]), dtype=np.int64)
        ids = _ids(name, column[1])
    elif type(column).__module__.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if column.null_count:
            column = column.fill_null(pa.scalar([], type=column.type))
        offsets = np.asarray(column.offsets, dtype=np.int64)
        offsets = offsets - offsets[0]
        ids = _ids(name, column.flatten())
    else:
        seqs = list(column)
        lengths = [0 if s is None else len(s) for s in seqs]
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        parts = [np.asarray(s).reshape(-1) for s in seqs if s is not None and len(s)]
        ids = _ids(name, np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    if len(offsets) != rows + 1:
        raise ValueError(f"bag {name!r}: {len(offsets) - 1} rows, expected {rows}")
    if offsets.size and (offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != len(ids)):
        raise ValueError(f"bag {name!r}: offsets must rise from 0 to the number of ids")
    return np.ascontiguousarray(offsets, dtype=np.uint64), ids


class Model:
    """A trained model, loaded from a model file, ready to score."""

    def __init__(self, native):
        self._m = native

    @classmethod
    def load(cls, path, precision="f32"):
        """Reads a model file (checksums and shapes checked) and compiles its serving plan,
        its GEMMs in `precision`: "f32" (default) or "int8" (faster; scores within the
        accuracy measured in docs/resflow.md, "Int8 serving")."""
        return cls(_native.Model.load(os.fspath(path), precision))

    @property
    def precision(self):
        """The arithmetic of the scorer's GEMMs: "f32" or "int8"."""
        return self._m.precision

    @property
    def tasks(self):
        """Task names, in chain order (the columns of the probabilities)."""
        return self._m.tasks

    @property
    def kind(self):
        """The model kind (resflow, shared_bottom, mmoe, ...)."""
        return self._m.kind

    @property
    def fields(self):
        """The categorical fields: a list of ``(name, vocab, is_bag)`` in the model's order."""
        return self._m.fields

    @property
    def dense(self):
        """The number of dense features."""
        return self._m.dense

    @property
    def request_fields(self):
        """The fields that are the same for every candidate of a request."""
        return self._m.request_fields

    def score(self, features, dense=None):
        """Scores rows of features; returns ``(probs, fused)``: float32 arrays of shape
        ``(rows, len(tasks))`` and ``(rows,)``.

        ``features`` is a dict of arrays, a pandas DataFrame or a pyarrow Table with one
        column per field of the model: integer ids for a single-valued field, per-row id
        lists (or an ``(offsets, ids)`` tuple, or a pyarrow list column) for a bag. The
        dense features come from ``features["dense"]`` (a ``rows x D`` array) or, when
        ``dense`` lists column names, from those columns in that order. Ids are the ones
        the conversion wrote (docs/shards.md). Consecutive rows with the same
        request-level values are scored as one request.
        """
        cols = _columns(features)
        names = [f[0] for f in self.fields]
        missing = [n for n in names if n not in cols]
        if missing:
            raise ValueError(f"features lack the model's fields {missing} (it has {names})")
        rows = None
        for name, _, is_bag in self.fields:
            if not is_bag:
                rows = len(cols[name])
                break
        if rows is None:
            rows = len(cols[names[0]]) if names else 0
        d = self.dense
        if dense is not None:
            x = np.column_stack([np.asarray(cols[c], dtype=np.float32) for c in dense]) if dense else None
            x = np.zeros((rows, 0), dtype=np.float32) if x is None else x
        elif "dense" in cols:
            x = np.asarray(cols["dense"], dtype=np.float32)
            if x.ndim == 1 and d == 1:
                x = x.reshape(-1, 1)
        elif d == 0:
            x = np.zeros((rows, 0), dtype=np.float32)
        else:
            raise ValueError(f"the model reads {d} dense features: give features['dense'] or dense=[column names]")
        if x.ndim != 2 or x.shape != (rows, d):
            raise ValueError(f"dense features: shape {x.shape}, expected ({rows}, {d})")
        if not np.all(np.isfinite(x)):
            raise ValueError("dense features must be finite")
        single, offsets, ids = [], [], []
        for name, _, is_bag in self.fields:
            if is_bag:
                o, i = _bag(name, cols[name], rows)
                offsets.append(o)
                ids.append(i)
            else:
                single.append(_ids(name, cols[name], rows))
        probs, fused = self._m._score(rows, single, offsets, ids, np.ascontiguousarray(x, dtype=np.float32))
        return probs.reshape(rows, len(self.tasks)), fused

    def __repr__(self):
        return f"Model(kind={self.kind!r}, tasks={self.tasks}, fields={len(self.fields)}, dense={self.dense})"
