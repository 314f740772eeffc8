"""Real training output for the metric parser's tests, printed by the libraries themselves
(scikit-learn 1.9.1, xgboost 3.2.0, lightgbm 4.7.0, tqdm 4.70.1, from PyPI):

    python3 -m pip install scikit-learn xgboost lightgbm tqdm
    for w in sklearn xgboost lightgbm lightgbm-default tqdm; do python3 make_fixtures.py $w > $w.txt 2>&1; done

(lightgbm-default: LightGBM 4.7.0 at its default verbosity, whose [Info] lines are not metrics.)
"""
import sys
import warnings

warnings.filterwarnings("ignore")
from sklearn.datasets import make_classification

X, y = make_classification(n_samples=300, n_features=8, n_informative=4, n_classes=3, random_state=0)
which = sys.argv[1]
if which == "sklearn":
    from sklearn.neural_network import MLPClassifier
    MLPClassifier(max_iter=5, verbose=True, random_state=0).fit(X, y)
elif which == "xgboost":
    import xgboost as xgb
    train, valid = xgb.DMatrix(X[:200], label=y[:200]), xgb.DMatrix(X[200:], label=y[200:])
    xgb.train({"objective": "multi:softprob", "num_class": 3, "seed": 0}, train, 5, evals=[(train, "train"), (valid, "eval")])
elif which == "lightgbm":
    import lightgbm as lgb
    train = lgb.Dataset(X[:200], y[:200])
    valid = lgb.Dataset(X[200:], y[200:], reference=train)
    lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "seed": 0}, train, 5, valid_sets=[valid],
              callbacks=[lgb.log_evaluation(1)])
elif which == "lightgbm-default":
    import lightgbm as lgb
    train = lgb.Dataset(X[:200], (y[:200] == 1).astype(int))
    valid = lgb.Dataset(X[200:], (y[200:] == 1).astype(int), reference=train)
    lgb.train({"objective": "binary", "seed": 0}, train, 5, valid_sets=[valid],
              callbacks=[lgb.log_evaluation(1)])
elif which == "tqdm":
    from tqdm import tqdm
    bar = tqdm(range(30), mininterval=0, miniters=1, file=sys.stdout)
    for i in bar:
        bar.set_postfix(acc=round(i / 30, 2), loss=round(1 / (i + 1), 4))
