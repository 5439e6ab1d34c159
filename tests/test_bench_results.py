from pathlib import Path

from benchmarks.results import markdown_table, write_section


def test_sections_are_replaced_not_appended(tmp_path: Path):
    path = tmp_path / "RESULTS.md"
    write_section(path, "Ingest", markdown_table(["a", "b"], [[1, 2]]))
    write_section(path, "Engines", "engines v1")
    write_section(path, "Ingest", "ingest v2")
    text = path.read_text()
    assert text.count("## Ingest") == 1 and "ingest v2" in text and "| 1 | 2 |" not in text
    assert "engines v1" in text
    assert "cores" in text, "each section names the machine"
