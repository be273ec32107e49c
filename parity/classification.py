"""Classification parity: argmax agreement with the near-tie rule, macro-F1/accuracy, confusion matrices.

Near-tie rule: Keras and scratch may pick different classes for a sample only when the top-2 Keras
probabilities are within tolerance of each other under the policy
(``|p1 - p2| <= atol_eff + rtol * p1``, with the output's effective reduction). Every such sample is
listed. The metrics must then be equal, or differ only through those listed samples: with scratch's
prediction replaced by Keras's on the near-ties, the metrics must match exactly.
"""

import numpy as np

from .tolerance import tolerance


def metrics(y_true, y_pred, labels):
    """Accuracy and macro-F1 from scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score

    return dict(accuracy=float(accuracy_score(y_true, y_pred)),
                macro_f1=float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)))


def confusion(y_true, y_pred, labels):
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=labels).tolist()


def compare_classification(y_true, keras_probs, scratch_probs, *, ids=None, labels=None, reduction=1,
                           atol=None, rtol=None):
    """Argmax agreement, near-ties, metrics and confusion matrices for both sides (JSON-ready)."""
    kp = np.asarray(keras_probs)
    sp = np.asarray(scratch_probs)
    y_true = np.asarray(y_true)
    if kp.shape != sp.shape:
        raise ValueError(f"probability shapes differ: Keras {kp.shape} vs scratch {sp.shape}")
    if len(y_true) != len(kp):
        raise ValueError(f"{len(y_true)} labels for {len(kp)} predictions")
    labels = list(range(kp.shape[1])) if labels is None else list(labels)
    ids = list(range(len(kp))) if ids is None else [str(i) if not isinstance(i, (int, np.integer)) else int(i)
                                                    for i in ids]
    k_pred = kp.argmax(axis=1)
    s_pred = sp.argmax(axis=1)
    scale = float(np.max(np.abs(kp))) if kp.size else 0.0
    a, r = tolerance(np.float32, scale=scale, reduction=reduction)
    a = a if atol is None else float(atol)
    r = r if rtol is None else float(rtol)
    disagreements = []
    for i in np.flatnonzero(k_pred != s_pred):
        order = np.argsort(-kp[i].astype(np.float64), kind="stable")
        p1, p2 = float(kp[i, order[0]]), float(kp[i, order[1]])
        bound = a + r * abs(p1)
        disagreements.append(dict(index=int(i), id=ids[i], true=int(y_true[i]), keras=int(k_pred[i]),
                                  scratch=int(s_pred[i]), keras_top2=[int(order[0]), int(order[1])],
                                  keras_p1=p1, keras_p2=p2, gap=p1 - p2, tie_bound=bound,
                                  near_tie=bool(p1 - p2 <= bound)))
    km = metrics(y_true, k_pred, labels)
    sm = metrics(y_true, s_pred, labels)
    corrected = s_pred.copy()
    for d in disagreements:
        if d["near_tie"]:
            corrected[d["index"]] = d["keras"]
    cm = metrics(y_true, corrected, labels)
    metrics_explained = cm == km
    return dict(
        samples=int(len(kp)),
        agreement=float(np.mean(k_pred == s_pred)) if len(kp) else 1.0,
        disagreements=disagreements,
        near_ties=sum(d["near_tie"] for d in disagreements),
        keras=km, scratch=sm,
        metrics_equal=km == sm,
        metrics_explained_by_near_ties=metrics_explained,
        confusion_keras=confusion(y_true, k_pred, labels),
        confusion_scratch=confusion(y_true, s_pred, labels),
        tie_rule=dict(atol=a, rtol=r, reduction=int(reduction)),
        passed=bool(all(d["near_tie"] for d in disagreements) and metrics_explained),
    )
