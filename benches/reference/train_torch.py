#!/usr/bin/env python3
"""The PyTorch reference for `resflow train`: the same ResFlow model, data and settings.

Trains the default ResFlow configuration (see docs/resflow.md) on an Ali-CCP-layout CSV
written by `resflow gen --csv`, for one epoch, and prints one JSON object with the
training throughput and the per-task AUC on an evaluation CSV.

The model, as resflow builds it:
  - one table per field (`vocab x 32`, uniform in [-0.05, 0.05]); single-valued fields
    look up one row, the two bag fields sum theirs (an empty bag gives zeros);
  - the 608-wide concatenation goes through the shared input BatchNorm in its frozen
    ("affine") form, gamma * x / sqrt(1 + 1e-3) + beta;
  - per task a tower of 128 and 64 units, each h = BN(PReLU(x W + b)) (Glorot-uniform W,
    zero b, one PReLU slope per unit starting at 0, affine BN), then a 1-unit logit;
  - residual links: task k adds task k-1's output of the same layer after its BN, and its
    logit adds task k-1's logit;
  - loss: sum_k lambda_k * mean(weighted BCE with logits), pos_weight 100 / 500,
    lambda 2 / 1 (click, click-and-convert);
  - Adam (lr 4e-4, betas 0.9 / 0.999, eps 1e-7) on the dense parameters, SparseAdam (the
    lazy form: only the rows in the batch move) on the tables; batches of 1024, shuffled.
    Both in resflow's form, which adds eps to sqrt(v) before the bias correction
    (p -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)). SparseAdam has that form
    already; torch.optim.Adam adds eps after it, so with `--adam-eps tf1` (the default)
    its eps is set each step to eps / sqrt(1 - b2^t), which makes the two updates equal;
    `--adam-eps torch` keeps PyTorch's own form.

Throughput counts the training loop only (batch assembly, forward, backward, both
optimiser steps), as resflow's figure counts its steps only, from the second step on (the
first allocates the optimisers' state, which resflow does before its clock starts).

Usage: python3 train_torch.py --schema DIR/schema.json --train train.csv --eval eval.csv
       [--threads 2] [--epochs 1] [--seed 42] [--adam-eps tf1|torch]
Needs torch and numpy (`pip install torch numpy`; the CPU wheels are enough).
"""

import argparse
import csv
import json
import sys
import time

import numpy as np
import torch
from torch import nn


def read_csv(path, n_single, n_bag):
    """Labels (rows x 2), single ids (rows x n_single) and per bag (values, offsets)."""
    labels, single = [], []
    bags = [([], [0]) for _ in range(n_bag)]
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        if header[:4] != ["sample_id", "session", "click", "conversion"]:
            sys.exit(f"{path}: not an Ali-CCP-layout CSV from `resflow gen --csv`")
        for row in r:
            labels.append((float(row[2]), float(row[3])))
            single.append([int(x) for x in row[4 : 4 + n_single]])
            for j in range(n_bag):
                cell = row[4 + n_single + j]
                vals, offs = bags[j]
                if cell:
                    vals.extend(int(x) for x in cell.split(";"))
                offs.append(len(vals))
    return (
        torch.tensor(labels, dtype=torch.float32),
        torch.tensor(single, dtype=torch.int64),
        [(torch.tensor(v, dtype=torch.int64), torch.tensor(o, dtype=torch.int64)) for v, o in bags],
    )


def gather_bag(vals, offs, idx):
    """Values and offsets of the bags of rows `idx` (for nn.EmbeddingBag)."""
    starts, ends = offs[idx], offs[idx + 1]
    lens = ends - starts
    out_offs = torch.zeros(len(idx), dtype=torch.int64)
    out_offs[1:] = torch.cumsum(lens, 0)[:-1]
    rows = torch.repeat_interleave(torch.arange(len(idx)), lens)
    pos = torch.arange(int(lens.sum())) - out_offs[rows] + starts[rows]
    return vals[pos], out_offs


class Affine(nn.Module):
    """BatchNorm with statistics frozen at 0 and 1 (the authors' code in practice)."""

    def __init__(self, width, eps=1e-3):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))
        self.beta = nn.Parameter(torch.zeros(width))
        self.scale = 1.0 / (1.0 + eps) ** 0.5

    def forward(self, x):
        return x * (self.gamma * self.scale) + self.beta


class ResFlow(nn.Module):
    def __init__(self, single_vocab, bag_vocab, dim=32, hidden=(128, 64), tasks=2):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(v, dim, sparse=True) for v in single_vocab)
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(v, dim, mode="sum", sparse=True) for v in bag_vocab
        )
        for e in list(self.emb) + list(self.bags):
            nn.init.uniform_(e.weight, -0.05, 0.05)
        width = dim * (len(single_vocab) + len(bag_vocab))
        self.bn_in = Affine(width)
        self.towers = nn.ModuleList()
        for _ in range(tasks):
            layers, w = nn.ModuleList(), width
            for h in hidden:
                lin = nn.Linear(w, h)
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
                layers.append(nn.ModuleList([lin, nn.PReLU(h, init=0.0), Affine(h)]))
                w = h
            logit = nn.Linear(w, 1)
            nn.init.xavier_uniform_(logit.weight)
            nn.init.zeros_(logit.bias)
            self.towers.append(nn.ModuleList([layers, logit]))

    def dense_parameters(self):
        skip = {id(e.weight) for e in list(self.emb) + list(self.bags)}
        return [p for p in self.parameters() if id(p) not in skip]

    def table_parameters(self):
        return [e.weight for e in list(self.emb) + list(self.bags)]

    def forward(self, single, bags):
        parts = [e(single[:, i]) for i, e in enumerate(self.emb)]
        parts += [b(v, o) for b, (v, o) in zip(self.bags, bags)]
        x = self.bn_in(torch.cat(parts, 1))
        prev, prev_z, logits = None, None, []
        for layers, logit in self.towers:
            h, outs = x, []
            for l, (lin, act, bn) in enumerate(layers):
                h = bn(act(lin(h)))
                if prev is not None:
                    h = h + prev[l]
                outs.append(h)
            z = logit(h)
            if prev_z is not None:
                z = z + prev_z
            logits.append(z)
            prev, prev_z = outs, z
        return torch.cat(logits, 1)


def auc(y, p):
    """Area under the ROC curve with tied scores sharing their average rank."""
    y = np.asarray(y) > 0.5
    _, inv, counts = np.unique(np.asarray(p), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inv]
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", required=True, help="schema.json of the shards")
    ap.add_argument("--train", required=True, help="training CSV (resflow gen --csv)")
    ap.add_argument("--eval", help="evaluation CSV")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--adam-eps", choices=["tf1", "torch"], default="tf1",
                    help="where dense Adam adds eps: resflow's form (tf1) or PyTorch's")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    schema = json.load(open(a.schema))
    single_vocab = [f["vocab"] for f in schema["single"]]
    bag_vocab = [f["vocab"] for f in schema["multi"]]
    if any(f.get("pooling", "sum") != "sum" for f in schema["multi"]) or schema["dense"]["count"]:
        sys.exit("this reference covers the Ali-CCP layout (sum-pooled bags, no dense features)")

    labels, single, bags = read_csv(a.train, len(single_vocab), len(bag_vocab))
    model = ResFlow(single_vocab, bag_vocab)
    eps, beta2 = 1e-7, 0.999
    opt = torch.optim.Adam(model.dense_parameters(), lr=4e-4, betas=(0.9, beta2), eps=eps)
    sparse = torch.optim.SparseAdam(model.table_parameters(), lr=4e-4, betas=(0.9, 0.999), eps=1e-7)
    loss_fns = [
        nn.BCEWithLogitsLoss(pos_weight=torch.tensor(100.0)),
        nn.BCEWithLogitsLoss(pos_weight=torch.tensor(500.0)),
    ]
    lambdas = [2.0, 1.0]
    n = labels.shape[0]
    seconds, steps, timed_rows = 0.0, 0, 0
    for _ in range(a.epochs):
        order = torch.randperm(n)
        start = time.perf_counter()
        for b in range(0, n, a.batch):
            if steps == 1:
                # The clock starts after the first step: PyTorch allocates the optimisers'
                # moments there (1.3 GB with full tables), where resflow does it before
                # its first step, outside its clock.
                start, timed_rows = time.perf_counter(), 0
            idx = order[b : b + a.batch]
            bb = [gather_bag(v, o, idx) for v, o in bags]
            z = model(single[idx], bb)
            y = labels[idx]
            loss = sum(lam * f(z[:, k], y[:, k]) for k, (lam, f) in enumerate(zip(lambdas, loss_fns)))
            opt.zero_grad(set_to_none=True)
            sparse.zero_grad(set_to_none=True)
            loss.backward()
            if a.adam_eps == "tf1":
                # Adam's step t is steps + 1: eps / sqrt(1 - b2^t) after the bias correction
                # is eps before it.
                for group in opt.param_groups:
                    group["eps"] = eps / (1.0 - beta2 ** (steps + 1)) ** 0.5
            opt.step()
            sparse.step()
            steps += 1
            timed_rows += len(idx)
        seconds += time.perf_counter() - start
    out = {
        "torch": torch.__version__,
        "threads": a.threads,
        "rows": n,
        "steps": steps,
        "seconds": seconds,
        "samples_per_s": timed_rows / seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "adam_eps": a.adam_eps,
        "seed": a.seed,
    }
    if a.eval:
        el, es, eb = read_csv(a.eval, len(single_vocab), len(bag_vocab))
        probs = []
        with torch.no_grad():
            for b in range(0, el.shape[0], 8192):
                idx = torch.arange(b, min(b + 8192, el.shape[0]))
                probs.append(torch.sigmoid(model(es[idx], [gather_bag(v, o, idx) for v, o in eb])))
        p = torch.cat(probs).numpy()
        out["auc"] = {t: auc(el[:, k].numpy(), p[:, k]) for k, t in enumerate(schema["tasks"])}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
