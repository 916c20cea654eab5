#!/usr/bin/env python3
"""resflow's scorer against ONNX Runtime on the same model, one thread, run in turn in one sitting.

Trains (once) the model `resflow bench score` times, on a small synthetic Ali-CCP-layout
dataset with the same table sizes (19 fields, tables capped at 100,000 rows, 32-wide
embeddings, two 128-64-1 towers with PReLU and BatchNorm), exports it with
`resflow export --onnx`, and then alternates, for a number of rounds:

- `resflow bench score --candidates 500` (one thread; its no-split column: every field
  given per candidate, as the ONNX graph takes them), and
- ONNX Runtime on the exported graph: one intra-op and one inter-op thread, sequential
  execution, every graph optimisation (ORT_ENABLE_ALL), requests of 500 candidates drawn
  as the benchmark draws them (ids uniform over each table, 0 to 3 ids per bag), timed
  around `InferenceSession.run` after warm-up calls.

The weights differ (trained here, random in the benchmark); the shapes, the table sizes
and the work per request are the same. Prints each round's p50 and p99 of both, the ratio
ONNX Runtime / resflow at p50, and the median and best over the rounds.

`--precision int8` compares the int8 paths instead: `resflow bench score --precision int8`
against ONNX Runtime on the graph quantized by its own tool
(`onnxruntime.quantization.quantize_dynamic`: the Gemm and MatMul weights to int8 per
channel, the activations quantized at run time; ORT_ENABLE_ALL then fuses each into a
DynamicQuantizeMatMul). Both quantize dynamically; ONNX Runtime scales a whole activation
tensor where resflow scales each row.

Usage (from the repository root, after `cargo build --release`):
    python3 benches/reference/compare_scoring.py [--rounds 5] [--calls 300]
        [--precision f32|int8] [--work /tmp/resflow-vs-onnxruntime] [--install]
`--install` runs `pip install onnxruntime numpy` first (wheels from PyPI; with
`--precision int8` also `onnx`, which the quantization tool needs). Not part of the test
suite: it takes a minute or two and needs the network once.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from onnx_common import QUIET, open_graph, parser, prepare

CANDIDATES = 500


def percentile(sorted_values, q):
    """Nearest-rank quantile, as `bench::score::percentile`."""
    return sorted_values[round((len(sorted_values) - 1) * q)]


def requests(meta, n, count, np):
    """`count` random requests of `n` candidates, distributed as the benchmark's."""
    rng = np.random.default_rng(500)
    out = []
    for _ in range(count):
        feeds = {}
        for f in meta["fields"]:
            if f["bag"] is None:
                feeds[f"ids/{f['name']}"] = rng.integers(0, f["vocab"], n, dtype=np.int64)
            else:
                feeds[f"ids/{f['name']}"] = rng.integers(0, f["vocab"], (n, 3), dtype=np.int64)
                feeds[f"lengths/{f['name']}"] = rng.integers(0, 4, n, dtype=np.int64)
        out.append(feeds)
    return out


def time_onnxruntime(sess, reqs, calls):
    """Latencies (s) of `calls` runs after 3 warm-up runs, cycling through `reqs`."""
    times = []
    for i in range(calls + 3):
        feeds = reqs[i % len(reqs)]
        start = time.perf_counter()
        sess.run(None, feeds)
        t = time.perf_counter() - start
        if i >= 3:
            times.append(t)
    return sorted(times)


def main():
    ap = parser(__doc__, "/tmp/resflow-vs-onnxruntime")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300, help="ONNX Runtime calls per round")
    ap.add_argument("--bench-calls", type=int, default=2000,
                    help="--calls of `resflow bench score` (it scales them for 500 candidates)")
    ap.add_argument("--precision", choices=["f32", "int8"], default="f32",
                    help="compare the f32 paths (default) or the int8 ones")
    a = ap.parse_args()
    np, ort = prepare(a)
    if a.precision == "int8" and a.install:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "onnx"])
    data = os.path.join(a.work, "data")
    model = os.path.join(a.work, "model.safetensors")
    graph = os.path.join(a.work, "model.onnx")
    if not os.path.exists(graph):
        if not os.path.exists(data):
            subprocess.check_call([a.resflow, "gen", "--rows", "20000", "--max-vocab", "100000",
                                   "--out", data], **QUIET)
        subprocess.check_call([a.resflow, "train", "--train", data, "--epochs", "1",
                               "--out", model], **QUIET)
        subprocess.check_call([a.resflow, "export", "--model", model, "--onnx", graph], **QUIET)
    if a.precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = os.path.join(a.work, "model.int8.onnx")
        if not os.path.exists(quantized):
            quantize_dynamic(graph, quantized, op_types_to_quantize=["Gemm", "MatMul"],
                             per_channel=True, weight_type=QuantType.QInt8)
        graph = quantized

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess, meta = open_graph(ort, graph, opts)
    reqs = requests(meta, CANDIDATES, 8, np)
    kernel = json.loads(subprocess.check_output(
        [a.resflow, "bench", "score", "--candidates", "1", "--calls", "50", "--json"]))["kernel"]
    print(f"{CANDIDATES} candidates per request, one thread, no request-level split, "
          f"{a.precision}; resflow kernel {kernel}, onnxruntime {ort.__version__} "
          f"(ORT_ENABLE_ALL)")
    print(f"{'round':>5} {'resflow p50':>11} {'p99':>7} {'ORT p50':>8} {'p99':>7} {'ratio':>6}")
    ours_p50, ref_p50, ratios = [], [], []
    for k in range(a.rounds):
        out = subprocess.check_output(
            [a.resflow, "bench", "score", "--candidates", str(CANDIDATES),
             "--calls", str(a.bench_calls), "--precision", a.precision, "--json"])
        r = json.loads(out)["requests"][0]
        ours, ours99 = r["p50_no_split_ms"], r.get("p99_no_split_ms", float("nan"))
        t = time_onnxruntime(sess, reqs, a.calls)
        ref, ref99 = percentile(t, 0.5) * 1e3, percentile(t, 0.99) * 1e3
        ratio = ref / ours
        ours_p50.append(ours)
        ref_p50.append(ref)
        ratios.append(ratio)
        print(f"{k + 1:>5} {ours:>9.3f}ms {ours99:>5.3f}ms {ref:>6.3f}ms {ref99:>5.3f}ms {ratio:>6.2f}")
    print(f"p50 over rounds: resflow median {statistics.median(ours_p50):.3f} ms "
          f"(best {min(ours_p50):.3f}), ONNX Runtime median {statistics.median(ref_p50):.3f} ms "
          f"(best {min(ref_p50):.3f})")
    print(f"ratio ONNX Runtime / resflow: median {statistics.median(ratios):.2f}, "
          f"best {max(ratios):.2f}")


if __name__ == "__main__":
    main()
