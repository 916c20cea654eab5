"""What the scripts that run resflow's exported ONNX graph in ONNX Runtime share.

Their common arguments (`--work`, `--resflow`, `--install`), the setup before any work
(install and import onnxruntime and numpy, check that the resflow binary is built, make
the working directory), and opening the graph with the input layout the export records in
its metadata. Imported by check_onnx.py and compare_scoring.py, which sit beside it.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Keyword arguments of `subprocess.check_call` that silence a command's standard output.
QUIET = {"stdout": subprocess.DEVNULL}


def parser(doc, work):
    """An argument parser described by the first line of `doc`, with --work (default
    `work`), --resflow (the release binary of this checkout) and --install."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--work", default=work)
    ap.add_argument("--resflow", default=os.path.join(ROOT, "target", "release", "resflow"))
    ap.add_argument("--install", action="store_true", help="pip install onnxruntime numpy first")
    return ap


def prepare(a):
    """Installs onnxruntime and numpy first if `a.install`, imports them, checks that
    `a.resflow` exists and makes `a.work`; returns the modules (numpy, onnxruntime)."""
    if a.install:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "onnxruntime", "numpy"])
    import numpy as np
    import onnxruntime as ort

    if not os.path.exists(a.resflow):
        sys.exit(f"{a.resflow} not found: run `cargo build --release` first")
    os.makedirs(a.work, exist_ok=True)
    return np, ort


def open_graph(ort, graph, opts):
    """An ONNX Runtime session of the graph file `graph` on the CPU with the session
    options `opts`, and the input layout recorded in the graph (fields, dense, tasks)."""
    sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    return sess, json.loads(sess.get_modelmeta().custom_metadata_map["resflow.layout"])
