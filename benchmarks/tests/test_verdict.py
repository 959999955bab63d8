"""The verdict's tables (``python -m pathattr_bench.verdict``) come from the store with the report's statistics."""

from __future__ import annotations

import re
import sqlite3
import statistics

from pathattr_bench.runner import run
from pathattr_bench.store import Store
from pathattr_bench.verdict import family_values, main, verdict_tables


def test_verdict_tables_from_a_paper_run(tmp_path, capsys):
    db = str(tmp_path / "paper.sqlite")
    run(["synthetic"], ["ig", "guided_ig", "eg", "ig2_paper", "ig2"], ["insdel", "completeness"], profile="paper",
        db=db, limit=6, progress=False, log=lambda s: None)
    with Store(db, readonly=True) as store:
        values = family_values(store)
    assert set(values) == {"synthetic"}
    diffid = values["synthetic"]["diffid"]
    assert set(diffid) == {"ig", "guided_ig", "eg", "ig2_paper", "ig2"}
    assert all(len(v) == 6 for v in diffid.values())
    lines = verdict_tables(values)
    split = lines.index("")
    rows = {line.split(" | ")[1]: line for line in lines[2:split]}
    head_to_head = lines[split + 3:]
    assert len(head_to_head) == 1 and re.match(r"\| synthetic \(diffid\) \| (win|tie|loss) \(p=", head_to_head[0])
    assert set(rows) == {"IG2 (paper preset)", "IG2 (pathattr default)", "IG", "Guided IG", "EG"}
    # the interval's centre is the mean of the stored values; the variants carry an outcome against IG, Guided IG
    # and EG (no Blur IG on tabular data), the comparison methods none
    con = sqlite3.connect(db)
    ig = [r[0] for r in con.execute("SELECT value FROM results WHERE method = 'ig' AND metric = 'diffid'")]
    con.close()
    assert f"{statistics.fmean(ig):.3f} [" in rows["IG"] and "(n=6)" in rows["IG"]
    for variant in ("IG2 (paper preset)", "IG2 (pathattr default)"):
        cells = rows[variant].split(" | ")
        assert all(re.fullmatch(r"(win|tie|loss) \(p=[0-9.e-]+\)", c) for c in (cells[3], cells[4], cells[6]))
        assert cells[5] == ""  # Blur IG does not apply to tabular data
    assert "win" not in rows["IG"] and "loss" not in rows["IG"]
    assert main(["--db", db]) == 0
    assert capsys.readouterr().out.startswith("| family (primary metric) | method |")
