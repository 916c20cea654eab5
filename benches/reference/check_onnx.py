#!/usr/bin/env python3
"""The exported ONNX graph in ONNX Runtime against `resflow score`, on the same rows.

Generates a small synthetic Ali-CCP-layout dataset (shards and the same rows as CSV),
trains one epoch, exports the model both as a model file and as ONNX
(`resflow export --onnx`), scores the dataset with `resflow score`, then runs the ONNX
graph in ONNX Runtime on the CSV's ids (bags padded, with their lengths) and compares
every probability and fused score within 1e-5. It also checks that a candidate with an
out-of-range id scores NaN while the others keep their scores. Takes about half a minute.

Usage (from the repository root, after `cargo build --release`):
    python3 benches/reference/check_onnx.py [--work /tmp/resflow-onnx-check] [--install]
`--install` runs `pip install onnxruntime numpy` first (wheels from PyPI).
"""

import csv
import os
import subprocess
import sys

from onnx_common import QUIET, open_graph, parser, prepare

# The graph against the scorer: the same arithmetic in other orders, through a sigmoid
# (`tensor::tolerance::APPROXIMATE`).
TOLERANCE = 1e-5


def feeds_from_rows(meta, rows, np):
    """The graph's inputs for CSV rows of the Ali-CCP layout: ids, padded bags, lengths."""
    n = len(rows)
    feeds = {}
    for f in meta["fields"]:
        cells = [r[f["name"]] for r in rows]
        if f["bag"] is None:
            feeds[f"ids/{f['name']}"] = np.array([int(c) for c in cells], dtype=np.int64)
        else:
            bags = [[int(v) for v in c.split(";")] if c else [] for c in cells]
            width = max((len(b) for b in bags), default=0)
            ids = np.zeros((n, width), dtype=np.int64)
            for i, b in enumerate(bags):
                ids[i, : len(b)] = b
            feeds[f"ids/{f['name']}"] = ids
            feeds[f"lengths/{f['name']}"] = np.array([len(b) for b in bags], dtype=np.int64)
    if meta["dense"]:
        sys.exit("this check builds inputs for the Ali-CCP layout, which has no dense features")
    return feeds


def main():
    ap = parser(__doc__, "/tmp/resflow-onnx-check")
    ap.add_argument("--rows", type=int, default=3000)
    a = ap.parse_args()
    np, ort = prepare(a)
    data, table = os.path.join(a.work, "data"), os.path.join(a.work, "data.csv")
    model, graph = os.path.join(a.work, "model.safetensors"), os.path.join(a.work, "model.onnx")
    scores = os.path.join(a.work, "scores.csv")
    if not os.path.exists(table):
        subprocess.check_call([a.resflow, "gen", "--rows", str(a.rows), "--max-vocab", "2000",
                               "--out", data, "--csv", table], **QUIET)
    subprocess.check_call([a.resflow, "train", "--train", data, "--epochs", "1",
                           "--threads", "1", "--out", model], **QUIET)
    subprocess.check_call([a.resflow, "export", "--model", model, "--onnx", graph], **QUIET)
    subprocess.check_call([a.resflow, "score", "--model", model, "--data", data,
                           "--out", scores], **QUIET)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess, meta = open_graph(ort, graph, opts)
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(scores, newline="") as fh:
        ours = list(csv.DictReader(fh))
    if len(ours) != len(rows):
        sys.exit(f"{len(ours)} scores for {len(rows)} rows")
    want_p = np.array([[float(r[f"p_{t}"]) for t in meta["tasks"]] for r in ours])
    want_f = np.array([float(r["fused"]) for r in ours])
    order = [int(r["row"]) for r in ours]

    worst_p = worst_f = 0.0
    for start in range(0, len(rows), 500):
        idx = order[start:start + 500]
        p, f = sess.run(["probabilities", "fused"], feeds_from_rows(meta, [rows[i] for i in idx], np))
        worst_p = max(worst_p, float(np.max(np.abs(p - want_p[start:start + len(idx)]))))
        worst_f = max(worst_f, float(np.max(np.abs(f - want_f[start:start + len(idx)]))))
    print(f"onnxruntime {ort.__version__}: {len(rows)} rows, largest gap to `resflow score`: "
          f"probabilities {worst_p:.2e}, fused {worst_f:.2e}")
    if not (worst_p <= TOLERANCE and worst_f <= TOLERANCE):
        sys.exit(f"the ONNX graph disagrees with resflow score beyond {TOLERANCE}")

    # One out-of-range id: that candidate scores NaN, the others do not change.
    feeds = feeds_from_rows(meta, rows[:8], np)
    p_good, _ = sess.run(["probabilities", "fused"], feeds)
    first = f"ids/{meta['fields'][0]['name']}"
    feeds[first][3] = meta["fields"][0]["vocab"]
    p_bad, f_bad = sess.run(["probabilities", "fused"], feeds)
    others = [i for i in range(8) if i != 3]
    if not (np.isnan(p_bad[3]).all() and np.isnan(f_bad[3])
            and np.array_equal(p_bad[others], p_good[others])):
        sys.exit("an out-of-range id did not give NaN for its candidate alone")
    print("an out-of-range id scores NaN for its candidate alone: ok")


if __name__ == "__main__":
    main()
