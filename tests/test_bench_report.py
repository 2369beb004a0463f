"""bench/__main__.py report: ratio direction per unit and the BENCHMARKS.md table with its provenance line."""

from __future__ import annotations

import json

from bench.__main__ import ratio, write_markdown


def test_ratio_direction_by_unit():
    assert ratio({"ours": 2.0, "reference": 5.0, "unit": "s"}) == 2.5  # time: reference / ours
    assert ratio({"ours": 100.0, "reference": 400.0, "unit": "MB"}) == 4.0
    assert ratio({"ours": 30.0, "reference": 10.0, "unit": "clips/s"}) == 3.0  # throughput: ours / reference
    assert ratio({"ours": 1.0, "reference": None, "unit": "s"}) is None  # reference did not run or did not fit


def test_markdown_table_and_provenance(tmp_path):
    rows = {"model": [{"case": "encoder forward, B=1", "ours": 2.0, "reference": 4.1, "unit": "s", "notes": "n"},
                      {"case": "pretraining step, B=4", "ours": 43.0, "reference": None, "unit": "s", "notes": "m"}]}
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(path, {"cpu": "x"}, "python -m bench --only model", "2026-11-29", rows,
                   {"model": "`python -m bench --only model` at 19:10", "data": "`python -m bench` at 18:25"})
    text = path.read_text()
    assert "Rows by module come from: model: `python -m bench --only model` at 19:10." in text
    assert "| model | encoder forward, B=1 | 2.00 s | 4.10 s | 2.05x (ref/ours) | n |" in text
    assert "| model | pretraining step, B=4 | 43.00 s | - | - | m |" in text


def test_model_targets_section_judges_each_ratio(tmp_path):
    from bench.bench_model import markdown

    rows = [{"case": "encoder forward, B=1", "ours": 2.0, "reference": 3.2, "unit": "s"},  # 1.6x >= 1.5x
            {"case": "fine-tuning step (fwd+bwd+AdamW), B=1", "ours": 7.0, "reference": 9.8, "unit": "s"},  # 1.4x
            {"case": "pretraining step MAE+VAM (fwd+bwd+AdamW), B=1", "ours": 10.0, "reference": 21.0, "unit": "s"},
            {"case": "pretraining step peak RSS (B=1)", "ours": 3000.0, "reference": None, "unit": "MB"}]
    (tmp_path / "2026-01-02.json").write_text(json.dumps({"modules": {"model": rows}}))
    text = markdown("2026-01-02", str(tmp_path))
    assert "| encoder forward, B=1 | 2.00 s | 3.20 s | 1.60x | >= 1.5x | yes |" in text
    assert "| fine-tuning step (fwd+bwd+AdamW), B=1 | 7.00 s | 9.80 s | 1.40x | >= 1.5x | no |" in text
    assert "| 2.10x | >= 2x | yes |" in text
    assert "peak RSS" not in text  # no reference figure: no judgement
    assert markdown("2026-01-03", str(tmp_path)) == ""  # no results file for that date


def test_benchmarks_md_keeps_each_modules_newest_rows(tmp_path, monkeypatch):
    """A run of some modules keeps the other modules' rows from an earlier day, each named with its day."""
    import json

    import bench.__main__ as harness

    row = {"case": "c", "ours": 1.0, "reference": None, "unit": "s"}
    (tmp_path / "2026-11-29.json").write_text(json.dumps(
        {"command": "python -m bench", "modules": {"model": [row], "data": [row]}, "runs": {"model": "`m` at 10:00"}}))
    (tmp_path / "2026-12-01.json").write_text(json.dumps(
        {"command": "python -m bench --only data", "modules": {"data": [{**row, "ours": 2.0}]},
         "runs": {"data": "`d` at 11:00"}}))
    monkeypatch.setattr(harness, "RESULTS_DIR", tmp_path)
    rows, runs = harness.latest_rows()
    assert rows == {"model": [row], "data": [{**row, "ours": 2.0}]}
    assert runs == {"model": "`m` at 10:00 on 2026-11-29", "data": "`d` at 11:00 on 2026-12-01"}
