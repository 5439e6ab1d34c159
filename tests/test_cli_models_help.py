"""``ainode models train --help`` lists the packs; ``ainode models train PACK --help`` shows the pack's options."""
from __future__ import annotations

import subprocess
import sys

from node.cli import MODEL_COMMANDS


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "node.cli", "models", "train", *args, "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_train_help_lists_every_pack_and_how_to_see_its_options():
    text = _help()
    for pack in MODEL_COMMANDS:
        assert f"\n    {pack}" in text, pack
    assert "ainode models train PACK --help" in text


def test_each_pack_help_shows_its_own_options():
    for pack in MODEL_COMMANDS:
        text = _help(pack)
        assert f"usage: ainode models train {pack}" in text
        assert "--out" in text or "--phantoms" in text, pack
    assert "--contrast" in _help("brain-mr") and "--contrast" not in _help("cxr-nodule")
