"""TREC reader on a small fixture in the real format (tests/data/trec: lines ``COARSE:fine question``, Latin-1),
with the repeated lines the circulating train_5500.label has."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathattr_bench.families import text

FIXTURE = Path(__file__).parent / "data" / "trec"


def test_fixture_is_in_the_real_format():
    raw = (FIXTURE / text.TREC_TRAIN).read_bytes()
    assert b"\xe9" in raw  # Latin-1, not UTF-8
    questions, labels = text.parse_trec(FIXTURE / text.TREC_TRAIN)
    assert len(questions) == 34 and "LOC" in labels and "Caf\xe9 de Flore" in questions[25]
    _, fine = text.parse_trec(FIXTURE / text.TREC_TRAIN, fine=True)
    assert fine[0] == "DESC:manner"


def test_read_trec_dedupes_before_splitting():
    data = text.read_trec(FIXTURE)
    # 34 training lines: 3 repeats (one differs only in spaces) and 1 question of the held-out file removed
    assert len(data.train_texts) == 30
    assert len(data.test_texts) == 9  # one repeated held-out question
    assert len({" ".join(t.split()) for t in data.train_texts}) == len(data.train_texts)
    assert not {" ".join(t.split()) for t in data.train_texts} & {" ".join(t.split()) for t in data.test_texts}
    assert data.classes == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert "removed 4 repeated training and 1 repeated held-out questions" in data.source


def test_single_file_split_has_no_question_on_both_sides():
    data = text.read_trec(FIXTURE / text.TREC_TRAIN, test_fraction=0.3, seed=1)
    train = {" ".join(t.split()) for t in data.train_texts}
    test = {" ".join(t.split()) for t in data.test_texts}
    assert len(train) + len(test) == 31 and not train & test
    assert "removed 3 repeated questions" in data.source
    assert np.isin(data.test_labels, np.arange(len(data.classes))).all()


def test_dedupe_questions_keeps_first_occurrence_and_drops_listed():
    q, lab, removed = text.dedupe_questions(["a b", "c", "a  b", "d"], ["X", "Y", "Z", "W"], drop={"d"})
    assert q == ["a b", "c"] and lab == ["X", "Y"] and removed == 2
