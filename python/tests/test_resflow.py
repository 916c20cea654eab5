"""The Python package end to end on data the tests write: convert (CSV, and Parquet when
pyarrow is installed), train, load, score (dicts, pandas, pyarrow), the metrics against
hand-worked cases and brute force, errors as exceptions, and the GIL released."""

import threading

import numpy as np
import pytest

import resflow
from resflow import ResflowError

TRAIN_ROWS, EVAL_ROWS = 4000, 1500
SPEC = {
    "labels": ["click", "buy"],
    "single": [{"column": "user", "vocab": 40}, {"column": "item", "vocab": 120}],
    "multi": [{"column": "tags", "vocab": 16}],
    "dense": ["price"],
    "group": "session",
    "item": "item",
    "standardize": False,
}
CONFIG = {
    "embedding_dim": 8,
    "hidden": [16, 8],
    "batch_size": 256,
    "epochs": 3,
    "seed": 7,
    "optimizer": {"learning_rate": 0.005},
    "tasks": [{"name": "click"}, {"name": "buy"}],
    "request_fields": ["user"],
}


def make_rows(n, seed):
    """Rows whose click depends on the item, the tags and the price, sorted by user so
    that each user's rows form one request."""
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(0, 40, n))
    item = rng.integers(0, 120, n)
    ntags = rng.integers(0, 4, n)
    tags = [list(rng.integers(0, 16, k)) for k in ntags]
    price = np.round(rng.normal(0, 1, n), 3).astype(np.float32)
    logit = -1.5 + 2.5 * (item % 3 == 0) + 1.0 * np.array([3 in t for t in tags]) - 0.8 * price
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    buy = click * (rng.random(n) < 0.3 + 0.3 * (item % 2 == 0)).astype(int)
    return {"click": click, "buy": buy, "user": user, "item": item, "tags": tags, "price": price}


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("click,buy,user,item,tags,price,session\n")
        for r in range(len(rows["click"])):
            tags = ";".join(str(t) for t in rows["tags"][r])
            f.write(f"{rows['click'][r]},{rows['buy'][r]},{rows['user'][r]},{rows['item'][r]},{tags},{rows['price'][r]},{rows['user'][r]}\n")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Converted train and eval sets, a model trained on them, and its report."""
    d = tmp_path_factory.mktemp("resflow")
    train_rows, eval_rows = make_rows(TRAIN_ROWS, 1), make_rows(EVAL_ROWS, 2)
    write_csv(d / "train.csv", train_rows)
    write_csv(d / "eval.csv", eval_rows)
    conv = resflow.convert(d / "train.csv", d / "train", spec=SPEC, rows_per_shard=1000)
    resflow.convert(d / "eval.csv", d / "eval", spec=SPEC, vocab_from=d / "train")
    report = resflow.train(d / "train", d / "eval", config=CONFIG, out=d / "model.rfm", threads=2)
    return {"dir": d, "train": train_rows, "eval": eval_rows, "convert": conv, "report": report}


def features(rows):
    return {"user": rows["user"], "item": rows["item"], "tags": rows["tags"], "dense": rows["price"].reshape(-1, 1)}


def test_convert_reports_the_dataset(run):
    c = run["convert"]
    assert c["rows"] == TRAIN_ROWS
    assert c["shards"] == 4
    assert c["tasks"] == ["click", "buy"]
    assert c["funnel_violations"] == 0


def test_train_returns_the_report_and_writes_the_model(run):
    r = run["report"]
    assert r["train"]["steps"] in (3 * (TRAIN_ROWS // 256), 3 * -(-TRAIN_ROWS // 256))
    assert r["train"]["samples_per_s"] > 0
    assert r["eval"]["rows"] == EVAL_ROWS
    assert [t["name"] for t in r["eval"]["tasks"]] == ["click", "buy"]
    assert (run["dir"] / "model.rfm").exists()


def test_scores_are_probabilities_and_match_the_training_evaluation(run):
    m = resflow.Model.load(run["dir"] / "model.rfm")
    assert m.tasks == ["click", "buy"]
    assert [f[0] for f in m.fields] == ["user", "item", "tags"]
    assert m.dense == 1 and m.request_fields == ["user"]
    e = run["eval"]
    probs, fused = m.score(features(e))
    assert probs.shape == (EVAL_ROWS, 2) and fused.shape == (EVAL_ROWS,)
    assert probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    # The model learned the click rule; our AUC of its scores is the one the training
    # run reported for its evaluation set (the scorer runs the folded serving plan, the
    # evaluation the training graph: equal up to rounding).
    auc = resflow.metrics.auc(probs[:, 0], e["click"])
    assert auc > 0.7
    reported = run["report"]["eval"]["tasks"]
    assert reported[0]["auc"] == pytest.approx(auc, abs=2e-3)
    g = resflow.metrics.gauc(probs[:, 0], e["click"], e["user"])
    assert reported[0]["gauc"] == pytest.approx(g["value"], abs=2e-3)
    assert reported[0]["gauc_groups"] == g["groups_used"]


def test_int8_scores_stay_near_f32(run):
    f32 = resflow.Model.load(run["dir"] / "model.rfm")
    int8 = resflow.Model.load(run["dir"] / "model.rfm", precision="int8")
    assert (f32.precision, int8.precision) == ("f32", "int8")
    e = run["eval"]
    p, _ = f32.score(features(e))
    q, _ = int8.score(features(e))
    assert np.all((q >= 0) & (q <= 1))
    # This tiny model (8-wide embeddings, 16-8 towers) measured max 0.025, mean 0.0014.
    gap = np.abs(p - q)
    assert gap.max() < 0.05 and gap.mean() < 0.005, (gap.max(), gap.mean())
    assert resflow.metrics.auc(q[:, 0], e["click"]) == pytest.approx(
        resflow.metrics.auc(p[:, 0], e["click"]), abs=5e-3)
    with pytest.raises(Exception, match="int4"):
        resflow.Model.load(run["dir"] / "model.rfm", precision="int4")


def test_one_row_at_a_time_equals_the_batch(run):
    m = resflow.Model.load(run["dir"] / "model.rfm")
    e = run["eval"]
    probs, fused = m.score(features(e))
    for r in [0, 1, 17, EVAL_ROWS - 1]:
        one = {k: (v[r : r + 1]) for k, v in features(e).items()}
        p, f = m.score(one)
        np.testing.assert_allclose(p[0], probs[r], atol=1e-5)
        np.testing.assert_allclose(f[0], fused[r], atol=1e-5)


def test_pandas_and_pyarrow_tables_score_like_a_dict(run):
    m = resflow.Model.load(run["dir"] / "model.rfm")
    e = run["eval"]
    probs, _ = m.score(features(e))
    cols = {"user": e["user"], "item": e["item"], "tags": e["tags"], "price": e["price"]}
    pd = pytest.importorskip("pandas")
    p, _ = m.score(pd.DataFrame(cols), dense=["price"])
    np.testing.assert_array_equal(p, probs)
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"user": e["user"], "item": e["item"], "tags": pa.array(e["tags"], pa.list_(pa.int32())), "price": e["price"]})
    p, _ = m.score(table, dense=["price"])
    np.testing.assert_array_equal(p, probs)
    # An (offsets, ids) bag too.
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in e["tags"]])])
    ids = np.concatenate([np.asarray(t, dtype=np.int64) for t in e["tags"]])
    p, _ = m.score({**features(e), "tags": (offsets, ids)})
    np.testing.assert_array_equal(p, probs)


def test_parquet_converts_like_csv(run, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = run["train"]
    table = pa.table(
        {
            "click": t["click"],
            "buy": t["buy"],
            "user": t["user"],
            "item": t["item"],
            "tags": pa.array(t["tags"], pa.list_(pa.int64())),
            "price": t["price"],
            "session": t["user"],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=700, compression="zstd")
    c = resflow.convert(tmp_path / "train.parquet", tmp_path / "train", spec=SPEC, rows_per_shard=1000)
    assert c["rows"] == TRAIN_ROWS
    for name in ["schema.json", "shard-00000.rfs", "shard-00003.rfs"]:
        a = (tmp_path / "train" / name).read_bytes()
        b = (run["dir"] / "train" / name).read_bytes()
        assert a == b, name


def test_metrics_against_hand_worked_cases_and_brute_force():
    m = resflow.metrics
    assert m.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert m.auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    s, y = rng.random(300).astype(np.float32), (rng.random(300) < 0.3).astype(np.float32)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert m.auc(s, y) == pytest.approx(brute, abs=1e-12)
    # Group 1: AUC 1 over 3 rows; group 2: AUC 0 over 2 rows; group 3: one class, skipped.
    g = m.gauc([0.9, 0.1, 0.2, 0.3, 0.8, 0.5], [1, 0, 0, 1, 0, 1], [1, 1, 1, 2, 2, 3])
    assert g["value"] == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    assert (g["groups_used"], g["groups_total"]) == (2, 3)
    assert m.gauc([0.9, 0.1, 0.2, 0.3, 0.8], [1, 0, 0, 1, 0], ["a", "a", "a", "b", "b"], weight="clicks")["value"] == pytest.approx(0.5)
    # One group: weights 3, 0, 1 ranked by score 0.1, 0.9, 0.5: the top 2 hold 1 of 4.
    w = m.weighted_recall_at_k([0.1, 0.9, 0.5], [3, 0, 1], [7, 7, 7], k=[1, 2, 3])
    assert w["values"] == {1: pytest.approx(0.0), 2: pytest.approx(0.25), 3: pytest.approx(1.0)}


def test_errors_carry_the_library_messages(run, tmp_path):
    with pytest.raises(ResflowError, match="missing column"):
        resflow.convert(run["dir"] / "train.csv", tmp_path / "x", spec={**SPEC, "dense": ["nope"]})
    with pytest.raises(ResflowError, match="spec"):
        resflow.convert(run["dir"] / "train.csv", tmp_path / "y", spec={"labels": ["click"], "bogus": 1})
    (tmp_path / "bad.rfm").write_bytes(b"not a model")
    with pytest.raises(ResflowError):
        resflow.Model.load(tmp_path / "bad.rfm")
    m = resflow.Model.load(run["dir"] / "model.rfm")
    f = features(run["eval"])
    with pytest.raises(ResflowError, match="item"):
        m.score({**f, "item": np.full(EVAL_ROWS, 5000)})
    with pytest.raises(ValueError, match="ids must be in"):
        m.score({**f, "item": np.full(EVAL_ROWS, -1)})
    with pytest.raises(ValueError, match="lack"):
        m.score({"user": f["user"]})
    with pytest.raises(ResflowError, match="epochs"):
        resflow.train(run["dir"] / "train", config=CONFIG, epochs=0)
    with pytest.raises(ResflowError, match="options"):
        resflow.train(run["dir"] / "train", config=CONFIG, epoch=1)
    with pytest.raises(ResflowError):
        resflow.metrics.auc([0.1, float("nan")], [0, 1])


def test_the_gil_is_released_while_training_and_scoring(run, tmp_path):
    def count_while(target):
        t = threading.Thread(target=target)
        n = 0
        t.start()
        while t.is_alive():
            n += 1
        t.join()
        return n

    done = {}

    def train():
        done["train"] = resflow.train(run["dir"] / "train", config={**CONFIG, "epochs": 3}, threads=1)

    # With the GIL held for the whole run, this thread would get a turn only at the
    # interpreter's switch interval (5 ms) and count a handful; released, it spins freely.
    assert count_while(train) > 10_000
    assert done["train"]["train"]["steps"] > 0
    m = resflow.Model.load(run["dir"] / "model.rfm")
    big = {k: (np.tile(v, (20, 1)) if k == "dense" else (np.tile(v, 20) if k != "tags" else v * 20)) for k, v in features(run["eval"]).items()}
    big["user"] = np.sort(big["user"])
    assert count_while(lambda: m.score(big)) > 1_000
