"""Caption metrics: coco-caption's BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D, offline.

Each ``pycocoevalcap`` scorer is called on its own. ``COCOEvalCap.evaluate()`` is never used: it
always builds SPICE, which downloads Stanford CoreNLP models on first use.

Tokenization follows coco-caption (Stanford PTBTokenizer, lower-cased, punctuation tokens dropped),
but the jar is fed through stdin: the package's own ``PTBTokenizer`` writes a temp file into its
install folder (read-only on some machines, and a race between parallel runs). When Java is
missing, ``tokenize`` falls back to a pure-Python equivalent for already-tokenized lower-case text
(whitespace split, punctuation tokens dropped), and says which one it used.

Every scorer takes references and hypotheses either as coco's dicts, ``{id: [ref, ...]}`` and
``{id: [hyp]}``, or as plain lists in the same order: one list of references (or one reference
string) and one hypothesis string per sample. Captions are compared as whitespace tokens, so
tokenize first (``tokenize``) unless they are lower-case words already:

    >>> from parity import metrics
    >>> refs = [["a cat sits on the mat", "the cat is on the mat"], ["two dogs run"]]
    >>> hyps = ["a cat is on the mat", "two dogs run"]
    >>> metrics.bleu(refs, hyps)            # [BLEU-1, BLEU-2, BLEU-3, BLEU-4]
    >>> metrics.rouge_l(refs, hyps), metrics.cider_d(refs, hyps)
    >>> metrics.caption_metrics(refs, hyps)  # all of them, METEOR too when Java 17 is installed
    >>> metrics.macro_f1([0, 1, 2, 2], [0, 2, 2, 2])   # classification: sklearn's macro-F1

BLEU is cross-checked against nltk's ``corpus_bleu`` on the same tokens. They agree to ~1e-10 (coco
adds 1e-9/1e-15 smoothing constants) for every order n where all hypotheses have at least n tokens;
``bleu_cross_check`` explains and lists the orders it cannot compare.
"""

import os
import re
import shutil
import subprocess

# coco-caption's ptbtokenizer.PUNCTUATIONS, copied as data so the pure-Python path needs no Java.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

METRIC_NAMES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


class MetricError(RuntimeError):
    """A caption scorer could not run (for example METEOR's jar): the message says why."""


def _package_dir(sub):
    import pycocoevalcap

    # pycocoevalcap has no __init__.py: a namespace package, located through __path__.
    return os.path.join(list(pycocoevalcap.__path__)[0], sub)


def java_available():
    return shutil.which("java") is not None


def _ptb_lines(lines):
    """Run coco-caption's Stanford PTBTokenizer jar on ``lines`` via stdin (no temp file)."""
    jar_dir = _package_dir("tokenizer")
    cmd = ["java", "-cp", "stanford-corenlp-3.4.1.jar", "edu.stanford.nlp.process.PTBTokenizer",
           "-preserveLines", "-lowerCase"]
    text = "\n".join(line.replace("\n", " ") for line in lines) + "\n"
    proc = subprocess.run(cmd, cwd=jar_dir, input=text.encode(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise MetricError(f"PTBTokenizer exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    out = proc.stdout.decode().split("\n")
    if len(out) < len(lines):
        raise MetricError(f"PTBTokenizer returned {len(out)} lines for {len(lines)} captions")
    return out[: len(lines)]


def simple_tokenize_line(line):
    """Pure-Python tokenization for captions that are already lower-case word tokens."""
    words = re.sub(r"([.,!?;:])", r" \1 ", line.lower()).split()
    return " ".join(w for w in words if w not in PUNCTUATIONS)


def tokenize(captions, method="auto"):
    """{id: [caption, ...]} -> ({id: [tokenized caption, ...]}, method used: 'ptb' or 'simple')."""
    if method not in ("auto", "ptb", "simple"):
        raise ValueError(f"method must be 'auto', 'ptb' or 'simple'. Received: method={method!r}")
    if method == "auto":
        method = "ptb" if java_available() else "simple"
    keys = list(captions)
    flat = [c for k in keys for c in captions[k]]
    if method == "ptb":
        tokenized = [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
                     for line in _ptb_lines(flat)]
    else:
        tokenized = [simple_tokenize_line(c) for c in flat]
    out, i = {}, 0
    for k in keys:
        n = len(captions[k])
        out[k] = tokenized[i: i + n]
        i += n
    return out, method


def as_coco(gts, res):
    """Plain lists (or coco dicts) -> coco's ``({id: [refs]}, {id: [hyp]})``, ids 0..n-1 for lists."""
    if isinstance(gts, dict) and isinstance(res, dict):
        return gts, res
    if isinstance(gts, dict) or isinstance(res, dict):
        raise ValueError("give references and hypotheses both as {id: [captions]} dicts or both as lists")
    gts, res = list(gts), list(res)
    if len(gts) != len(res):
        raise ValueError(f"{len(gts)} reference entries for {len(res)} hypotheses")
    refs = {i: [r] if isinstance(r, str) else list(r) for i, r in enumerate(gts)}
    hyps = {i: [h] if isinstance(h, str) else list(h) for i, h in enumerate(res)}
    return refs, hyps


def _check(gts, res):
    if list(gts) != list(res):
        raise ValueError("references and hypotheses must have the same ids in the same order")
    for k in res:
        if len(res[k]) != 1:
            raise ValueError(f"id {k!r}: expected exactly one hypothesis, got {len(res[k])}")
        if not gts[k]:
            raise ValueError(f"id {k!r}: no reference captions")


def bleu(gts, res):
    """coco-caption BLEU-1..4 as a list of four floats (corpus level, over whitespace tokens)."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = as_coco(gts, res)
    _check(gts, res)
    score, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return [float(s) for s in score]


def rouge_l(gts, res):
    """coco-caption ROUGE-L (LCS-based F-measure, beta 1.2), averaged over samples."""
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = as_coco(gts, res)
    _check(gts, res)
    return float(Rouge().compute_score(gts, res)[0])


def cider_d(gts, res):
    """coco-caption CIDEr-D; its idf comes from the references given, so score a whole split at once."""
    # coco-caption's "CIDEr" is CIDEr-D: Gaussian length penalty (sigma=6) and clipped n-gram counts.
    from pycocoevalcap.cider.cider import Cider

    gts, res = as_coco(gts, res)
    _check(gts, res)
    return float(Cider().compute_score(gts, res)[0])


class MeteorScorer:
    """METEOR 1.5 (coco-caption's jar, ``-l en -norm``) with the reason spelled out when it fails."""

    def __init__(self):
        if not java_available():
            raise MetricError("METEOR needs Java: no 'java' on PATH (install a JRE, e.g. Debian openjdk-17-jre-headless)")
        jar = os.path.join(_package_dir("meteor"), "meteor-1.5.jar")
        if not os.path.exists(jar):
            raise MetricError(f"METEOR jar not found at {jar}")
        if not os.path.exists(os.path.join(_package_dir("meteor"), "data", "paraphrase-en.gz")):
            raise MetricError("METEOR's paraphrase table data/paraphrase-en.gz is missing from pycocoevalcap")
        from pycocoevalcap.meteor.meteor import Meteor

        self._meteor = Meteor()

    def score(self, gts, res):
        gts, res = as_coco(gts, res)
        _check(gts, res)
        proc = self._meteor.meteor_p
        try:
            value, _ = self._meteor.compute_score(gts, res)
        except (ValueError, BrokenPipeError, OSError) as exc:
            # The wrapper holds its lock when the jar dies mid-answer; free it or __del__ deadlocks.
            if self._meteor.lock.locked():
                self._meteor.lock.release()
            err = b""
            if proc.poll() is not None:
                err = proc.stderr.read() or b""
            raise MetricError(f"METEOR jar failed ({type(exc).__name__}: {exc}); java stderr: "
                              f"{err.decode(errors='replace').strip()[:500] or '(empty)'}") from None
        return float(value)

    def close(self):
        m, self._meteor = getattr(self, "_meteor", None), None
        if m is not None:
            m.meteor_p.stdin.close()
            m.meteor_p.kill()
            m.meteor_p.wait()  # the wrapper's own __del__ repeats these harmlessly


def caption_metrics(gts, res, meteor=None):
    """All coco metrics on tokenized {id: [refs]} / {id: [hyp]}.

    ``meteor`` is a MeteorScorer to reuse (Java start-up costs ~10 s), None to start one, or False
    to skip. A METEOR failure is reported in ``METEOR_error`` with the reason; the others still run.
    """
    gts, res = as_coco(gts, res)
    b = bleu(gts, res)
    out = {f"Bleu_{i + 1}": b[i] for i in range(4)}
    out["ROUGE_L"] = rouge_l(gts, res)
    out["CIDEr"] = cider_d(gts, res)
    out["METEOR"] = None
    if meteor is not False:
        own = meteor is None
        try:
            scorer = MeteorScorer() if own else meteor
            try:
                out["METEOR"] = scorer.score(gts, res)
            finally:
                if own:
                    scorer.close()
        except MetricError as exc:
            out["METEOR_error"] = str(exc)
    return out


def nltk_bleu(gts, res):
    """nltk ``corpus_bleu`` (BLEU-1..4, no smoothing) on the same whitespace tokens."""
    from nltk.translate.bleu_score import corpus_bleu

    gts, res = as_coco(gts, res)
    _check(gts, res)
    refs = [[r.split() for r in gts[k]] for k in res]
    hyps = [res[k][0].split() for k in res]
    weights = [(1.0,), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0.25, 0.25)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns (and returns ~0) when an order has no matches
        # one pass over the corpus for all four orders (nltk accepts a list of weight tuples)
        return [float(b) for b in corpus_bleu(refs, hyps, weights=weights)]


def bleu_cross_check(gts, res, tol=1e-9):
    """coco BLEU vs nltk corpus_bleu on the same tokens.

    Two cases are not comparable, and are listed in ``skipped`` with the reason instead:
    - an order n where some hypothesis has fewer than n tokens: nltk's ``modified_precision``
      divides by ``max(1, count)``, adding a phantom 1 to the corpus denominator where coco adds 0;
    - an order n where some order <= n has no matching n-gram in the whole corpus: nltk returns 0,
      coco its smoothing constants (1e-15 / 1e-9), e.g. 1e-6 after the 4th root.
    """
    from nltk.translate.bleu_score import modified_precision

    coco = bleu(gts, res)
    ref = nltk_bleu(gts, res)
    shortest = min((len(res[k][0].split()) for k in res), default=0)
    matches = [sum(modified_precision([r.split() for r in gts[k]], res[k][0].split(), n).numerator for k in res)
               for n in range(1, 5)]
    checked, skipped = [], {}
    for n in range(1, 5):
        short = sum(len(res[k][0].split()) < n for k in res)
        if shortest < n:
            skipped[n] = f"{short} hypothesis(es) shorter than {n} tokens"
        elif min(matches[:n]) == 0:
            skipped[n] = f"no matching n-grams of some order <= {n}"
        else:
            checked.append(n)
    diff = max((abs(coco[n - 1] - ref[n - 1]) for n in checked), default=0.0)
    return dict(coco=coco, nltk=ref, orders_checked=checked, skipped=skipped, max_diff=diff, tol=tol,
                passed=bool(checked) and diff <= tol)


def macro_f1(y_true, y_pred, labels=None):
    """Macro-averaged F1 over ``labels`` (default: every label seen), as scikit-learn computes it."""
    from .classification import metrics as classification_metrics

    if labels is None:
        labels = sorted(set(list(y_true)) | set(list(y_pred)))
    return classification_metrics(list(y_true), list(y_pred), labels)["macro_f1"]
