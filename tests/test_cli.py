"""The ``ainode`` command: phantom, send, check-config, serve's config errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from node.cli import main
from node.ingest import IngestServer
from node.metrics import Metrics
from node.store.spool import Spool
from node.store import JobStore


def test_phantom_then_send_to_the_node(tmp_path: Path):
    out = tmp_path / "head"
    assert main(["phantom", "head-ct", "--out", str(out), "--seed", "5", "--slices", "4", "--no-hematoma"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["has_hematoma"] is False
    store = JobStore(tmp_path / "db.sqlite")
    server = IngestServer("AINODE", "127.0.0.1", 0, store, Spool(tmp_path / "spool"), Metrics())
    server.start()
    try:
        assert main(["send", str(out), "--port", str(server.port), "--aet", "AINODE"]) == 0
    finally:
        server.stop()
    assert store.instance_counts().get("indexed") == 4  # filed under their series on receipt


def test_serve_stops_with_a_message_naming_the_wrong_key(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text("[node]\ndicom_prot = 104\n")
    result = subprocess.run([sys.executable, "-m", "node.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "node.dicom_prot" in result.stderr


def test_check_config_accepts_the_repository_config():
    repo = Path(__file__).resolve().parents[1]
    assert main(["check-config", str(repo / "config.toml")]) == 0
