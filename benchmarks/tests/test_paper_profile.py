"""The ``paper`` profile of the runner: class-balanced explicand order, method list, store label."""

from __future__ import annotations

import sqlite3

import torch

from pathattr_bench.runner import PAPER_PROFILE_METHODS, paper_order, profile_methods, run


def test_paper_order_is_class_interleaved_and_prefix_balanced():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    order = paper_order(labels, 7)
    assert order == [0, 4, 6, 1, 5, 7, 2]
    assert paper_order(labels, 50) == [0, 4, 6, 1, 5, 7, 2, 8, 3]  # fewer explicands than asked: all of them
    assert sorted(labels[order[:3]].tolist()) == [0, 1, 2]
    # classes in order of first appearance: one explicand per class keeps the family's order
    assert paper_order(torch.tensor([7, 3, 9, 3]), 3) == [0, 1, 2]


def test_paper_profile_methods_are_registered_and_in_issue_order():
    methods = profile_methods("paper")
    assert methods[:6] == ["ig", "ig_refs", "eg", "smoothgrad", "guided_ig", "blur_ig"]
    assert {"ig2", "gradpath_ig", "gradcf_ig", "ig2_idgi"} <= set(methods)
    assert all(m in PAPER_PROFILE_METHODS for m in methods)


def test_paper_profile_run_is_labelled_and_resumes(tmp_path):
    db = str(tmp_path / "paper.sqlite")
    stats = run(["synthetic"], ["ig", "ig2"], ["insdel"], profile="paper", db=db, limit=3, progress=False,
                log=lambda s: None)
    assert stats.computed == 6
    again = run(["synthetic"], ["ig", "ig2"], ["insdel"], profile="paper", db=db, limit=5, progress=False,
                log=lambda s: None)
    assert again.skipped == 6 and again.computed == 4
    con = sqlite3.connect(db)
    assert {r[0] for r in con.execute("SELECT profile FROM models")} == {"paper"}
    labels = [r[0] for r in con.execute("SELECT DISTINCT example FROM results ORDER BY example")]
    assert labels == [0, 1, 2, 3, 4]
    con.close()
