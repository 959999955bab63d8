"""The ``pathattr`` command line."""

from __future__ import annotations

import sqlite3

import pytest

from pathattr_bench import cli


def test_bench_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("synthetic", "imagenet", "ig2", "gradcf_ig", "blur_ig", "insertion (higher)", "gt_auroc"):
        assert word in out


def test_bench_run_and_report(tmp_path, capsys):
    db = tmp_path / "b.sqlite"
    res = tmp_path / "res"
    argv = ["run", "--family", "synthetic", "--quick", "--methods", "ig,saliency", "--metrics",
            "insertion,deletion,gt_auroc", "--limit", "4", "--db", str(db), "--no-progress", "--report", str(res)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "computed 8 (example, method) attributions" in out and "report:" in out
    con = sqlite3.connect(str(db))
    metrics = {r[0] for r in con.execute("SELECT DISTINCT metric FROM results")}
    command = con.execute("SELECT command FROM runs").fetchone()[0]
    con.close()
    assert {"insertion", "deletion", "gt_auroc", "cost_seconds", "cost_passes"} <= metrics
    assert "diffid" not in metrics and "gt_ap" not in metrics  # only what was asked for
    assert command.startswith("pathattr-bench run --family synthetic")
    text = (res / "README.md").read_text()
    assert "| IG (zero baseline) | 4 |" in text
    # same command again: nothing to do
    assert cli.main(argv[:-2]) == 0
    assert "computed 0 (example, method) attributions, skipped 8" in capsys.readouterr().out


def test_bench_report_command(tmp_path, capsys):
    db = tmp_path / "b.sqlite"
    assert cli.main(["run", "--family", "synthetic", "--quick", "--methods", "ig", "--limit", "2",
                     "--db", str(db), "--no-progress"]) == 0
    assert cli.main(["report", "--db", str(db), "--out", str(tmp_path / "r"), "--no-figures"]) == 0
    assert (tmp_path / "r" / "README.md").is_file()
    assert not (tmp_path / "r" / "figures").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["run", "--quick"]) == 2
    assert "--family" in capsys.readouterr().err
    assert cli.main(["run", "--family", "synthetic", "--methods", "nope", "--db",
                     str(tmp_path / "x.sqlite")]) == 2
    assert "unknown methods" in capsys.readouterr().err
    assert cli.main(["run", "--family", "nofamily", "--db", str(tmp_path / "x.sqlite")]) == 2
    with pytest.raises(SystemExit):
        cli.main(["run", "--family", "synthetic", "--option", "novalue"])


def test_accuracy_error_exit_2(tmp_path, capsys, monkeypatch):
    from pathattr_bench.families import synthetic

    monkeypatch.setattr(synthetic, "MIN_ACCURACY", 0.999)
    assert cli.main(["run", "--family", "synthetic", "--quick", "--db", str(tmp_path / "a.sqlite"),
                     "--no-progress"]) == 2
    assert "below the stated minimum" in capsys.readouterr().err


def test_bench_speed_delegates(monkeypatch):
    from pathattr_bench.speed import suite as speed

    seen = []
    monkeypatch.setattr(speed, "main", lambda argv=None: seen.append(argv) or 0)
    assert cli.main(["speed", "--repeats", "1", "--quick"]) == 0
    assert seen == [["--repeats", "1", "--quick"]]


def test_options_parsing():
    assert cli._options(["model=pretrained", "retrain=true", "limit=3", "x=0.5"]) == {
        "model": "pretrained", "retrain": True, "limit": 3, "x": 0.5}


def test_explain_tabular(capsys):
    assert cli.main(["explain", "--family", "synthetic", "--method", "ig2", "--example", "1"]) == 0
    out = capsys.readouterr().out
    assert "method: ig2" in out and "attributions:" in out
    assert len(out.split("attributions:")[-1].split()) == 24
