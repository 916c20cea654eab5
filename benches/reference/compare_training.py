#!/usr/bin/env python3
"""resflow against PyTorch on the same training job, run in turn in one sitting.

Generates (once) 1,000,000 synthetic Ali-CCP-layout training rows and 200,000 evaluation
rows with the layout's full hash sizes (160.8 M parameters), as shards for resflow and as
the same rows in CSV for PyTorch, then alternates `resflow train` and `train_torch.py`
(one epoch each, the same thread count) for a number of rounds. Prints each run's
samples/s, AUC per task and peak RSS, the per-round ratio resflow / PyTorch, and the
median and best ratios.

Usage (from the repository root, after `cargo build --release`):
    python3 benches/reference/compare_training.py [--rounds 3] [--threads 2]
        [--work /tmp/resflow-vs-torch] [--rows 1000000] [--adam-eps tf1|torch] [--install]
`--adam-eps` is passed to train_torch.py: `tf1` (the default) gives PyTorch's dense Adam
resflow's epsilon form, like for like; `torch` keeps PyTorch's own.
`--install` runs `pip install torch numpy` first (CPU wheels from PyPI). Not part of the
test suite: it takes minutes and needs the network once.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_measured(cmd):
    """Runs `cmd` with its own peak RSS (through os.wait4), returns (stdout, rss, wall)."""
    start = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(devnull.fileno(), 2)
            os.execvp(cmd[0], cmd)
        os.close(w)
        chunks = []
        with os.fdopen(r) as f:
            chunks.append(f.read())
        _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed; run it by hand to see why")
    return "".join(chunks), usage.ru_maxrss * 1024, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--eval-rows", type=int, default=200_000)
    ap.add_argument("--max-vocab", type=int, default=4_000_000_000, help="default: no cap")
    ap.add_argument("--work", default="/tmp/resflow-vs-torch")
    ap.add_argument("--resflow", default=os.path.join(ROOT, "target", "release", "resflow"))
    ap.add_argument("--python", default=sys.executable, help="the Python that has torch")
    ap.add_argument("--adam-eps", choices=["tf1", "torch"], default="tf1",
                    help="the reference's dense Adam epsilon form (see train_torch.py)")
    ap.add_argument("--install", action="store_true", help="pip install torch numpy first")
    a = ap.parse_args()

    if a.install:
        subprocess.check_call([a.python, "-m", "pip", "install", "torch", "numpy"])
    if not os.path.exists(a.resflow):
        sys.exit(f"{a.resflow} not found: run `cargo build --release` first")
    os.makedirs(a.work, exist_ok=True)
    tag = f"{a.rows}-{a.max_vocab}"
    train, evald = os.path.join(a.work, f"train-{tag}"), os.path.join(a.work, f"eval-{tag}")
    for d, rows, seed in [(train, a.rows, 1), (evald, a.eval_rows, 2)]:
        if not os.path.exists(d + ".csv"):
            subprocess.check_call(
                [a.resflow, "gen", "--rows", str(rows), "--seed", str(seed),
                 "--max-vocab", str(a.max_vocab), "--out", d, "--csv", d + ".csv"],
                stdout=subprocess.DEVNULL,
            )
    torch_version = subprocess.check_output(
        [a.python, "-c", "import torch; print(torch.__version__)"], text=True
    ).strip()
    print(f"{a.rows} training rows, {a.eval_rows} evaluation rows, {a.threads} threads, "
          f"tables capped at {a.max_vocab} rows; PyTorch {torch_version}, "
          f"its dense Adam epsilon in the {a.adam_eps} form")
    print(f"{'round':>5} {'resflow/s':>10} {'torch/s':>10} {'ratio':>6}  "
          f"{'resflow AUC':>15} {'torch AUC':>15}  {'resflow RSS':>11} {'torch RSS':>10}")
    ratios = []
    report = os.path.join(a.work, "resflow-report.json")
    for k in range(a.rounds):
        _, ours_rss, _ = run_measured(
            [a.resflow, "train", "--train", train, "--eval", evald, "--threads",
             str(a.threads), "--epochs", "1", "--report", report]
        )
        ours = json.load(open(report))
        ours_auc = [t["auc"] for t in ours["eval"]["tasks"]]
        out, torch_rss, _ = run_measured(
            [a.python, os.path.join(HERE, "train_torch.py"), "--schema",
             os.path.join(train, "schema.json"), "--train", train + ".csv", "--eval",
             evald + ".csv", "--threads", str(a.threads), "--adam-eps", a.adam_eps]
        )
        ref = json.loads(out.strip().splitlines()[-1])
        ratio = ours["train"]["samples_per_s"] / ref["samples_per_s"]
        ratios.append(ratio)
        fmt = lambda xs: "/".join(f"{x:.4f}" for x in xs)
        print(f"{k + 1:>5} {ours['train']['samples_per_s']:>10.0f} {ref['samples_per_s']:>10.0f} "
              f"{ratio:>6.2f}  {fmt(ours_auc):>15} {fmt(ref['auc'].values()):>15}  "
              f"{ours_rss / 1e9:>9.2f}GB {torch_rss / 1e9:>8.2f}GB")
    print(f"ratio resflow / PyTorch: median {statistics.median(ratios):.2f}, best {max(ratios):.2f}")


if __name__ == "__main__":
    main()
