"""bench/__main__.py report: ratio direction per unit and the BENCHMARKS.md table with its provenance line."""

from __future__ import annotations

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
