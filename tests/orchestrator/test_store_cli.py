import json
import re

import typer
from typer.testing import CliRunner

from orchestrator.store_cli import human_bytes, store_app
from storage.inspect import summarize
from storage.store import CLIPS_FILE
from tests.storage.test_inspect import flip_frame_byte, rewrite_clips, write_toy_store

runner = CliRunner()


def _orch() -> typer.Typer:
    """The app as orchestrator/cli.py registers it: ``orch store ...``."""
    app = typer.Typer()

    @app.callback()
    def _group() -> None:
        pass

    app.add_typer(store_app, name="store")
    return app


def _row(*cells: str) -> str:
    """A table row (or header) holding these cells in this order."""
    return r"\s*[│┃]\s*".join(map(re.escape, cells))


def test_info_prints_the_counts(tmp_path):
    path = write_toy_store(tmp_path / "s")
    r = runner.invoke(_orch(), ["store", "info", str(path)])
    assert r.exit_code == 0, r.output
    out = r.output
    assert summarize(path).fingerprint[:12] in out
    assert re.search(_row("clips", "5"), out) and re.search(_row("frames", "88"), out)
    assert re.search(_row("split", "a", "b", "c", "(unlabelled)", "total"), out)
    assert re.search(_row("train", "2", "1", "0", "0", "3"), out)
    assert re.search(_row("test", "0", "1", "0", "1", "2"), out)
    assert re.search(_row("train", "2", "s1 (2), s2 (1)"), out)
    assert re.search(_row("30", "1", "1"), out) and re.search(_row("100", "0", "4"), out)
    assert re.search(_row("500", "2", "0"), out)
    assert re.search(_row("10", "10.8", "20", "17.6", "23.6", "26"), out)
    assert re.search(_row("size on disk", human_bytes(summarize(path).size_bytes)), out)
    assert re.search(_row("user: source", "unit test"), out)


def test_info_json_is_the_summary(tmp_path):
    path = write_toy_store(tmp_path / "s")
    r = runner.invoke(store_app, ["info", str(path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d == json.loads(json.dumps(summarize(path).to_dict()))
    assert d["split_classes"]["test"] == {"a": 0, "b": 1, "c": 0, "(unlabelled)": 1}


def test_info_on_a_folder_that_is_no_store(tmp_path):
    r = runner.invoke(store_app, ["info", str(tmp_path)])
    assert r.exit_code == 2
    assert r.output.startswith("error:") and CLIPS_FILE in r.output


def test_verify_an_intact_store(tmp_path):
    r = runner.invoke(_orch(), ["store", "verify", str(write_toy_store(tmp_path / "s"))])
    assert r.exit_code == 0, r.output
    for name in ("open", "offsets", "labels", "annotations", "fingerprint"):
        assert re.search(rf"^✓ {name} ", r.output, re.M)
    assert "all 5 checks passed" in r.output


def test_verify_a_changed_frame_exits_1(tmp_path):
    path = write_toy_store(tmp_path / "s")
    flip_frame_byte(path, "c4")
    r = runner.invoke(store_app, ["verify", str(path)])
    assert r.exit_code == 1
    assert re.search(r"^✗ fingerprint .*content fingerprint", r.output, re.M)
    assert re.search(r"^✓ labels ", r.output, re.M)
    assert "1 of 5 checks failed" in r.output


def test_verify_a_wrong_offset_names_the_clip(tmp_path):
    path = write_toy_store(tmp_path / "s")
    rewrite_clips(path, "c1", "frame_offset", 21)
    r = runner.invoke(store_app, ["verify", str(path)])
    assert r.exit_code == 1
    assert re.search(r"^✗ offsets .*clip 'c1': frame_offset 21, expected 20", r.output, re.M)
    assert re.search(r"^- fingerprint .*not run", r.output, re.M)


def test_verify_without_clips_file_is_not_a_store(tmp_path):
    path = write_toy_store(tmp_path / "s")
    (path / CLIPS_FILE).unlink()
    r = runner.invoke(_orch(), ["store", "verify", str(path)])
    assert r.exit_code == 2
    assert r.output.startswith("error:")
    assert str(path / CLIPS_FILE) in r.output and "missing" in r.output


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * 2**20, 3 * 2**40)] == \
        ["0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 TiB"]
