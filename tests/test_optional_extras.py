"""A configuration that needs an optional package that is not installed is refused at start
with one line naming the extra to install, exit code 2 (issue 35).

The missing package is simulated: the command runs in a subprocess whose ``sys.modules``
holds ``None`` for the module, so that importing it (or finding it) fails as when it is not
installed, whatever this machine has.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node.config import EXTRAS, ConfigError, check_extras, parse_config

REPO = Path(__file__).resolve().parents[1]

_PG = '[store]\nurl = "postgresql://ainode@127.0.0.1:5432/ainode"\n'


def _engine(engine: str) -> str:
    return f'[models.head]\npack = "head-ct-hematoma"\nengine = "{engine}"\n'


CASES = [
    ("postgres", "psycopg", _PG, "store.url"),
    ("gpu", "tensorrt", _engine("tensorrt"), "models.head.engine"),
    ("gpu", "onnxruntime", _engine("onnxruntime-trt"), "models.head.engine"),
    ("gpu", "onnxruntime", _engine("onnxruntime-cuda"), "models.head.engine"),
    ("gpu", "tritonclient", _engine("triton") + 'triton_url = "127.0.0.1:8000"\n', "models.head.engine"),
    ("train", "torch", _engine("torch"), "models.head.engine"),
]


def _ainode(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    code = (f"import sys; sys.modules[{module!r}] = None; from node.cli import main; "
            f"sys.argv = ['ainode', *{list(args)!r}]; sys.exit(main())")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _refused(result: subprocess.CompletedProcess[str], extra: str, key: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr[-2000:]
    assert f"pip install 'ainode[{extra}]'" in lines[0], lines[0]
    assert key in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("extra", "module", "toml", "key"), CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_check_config_names_the_missing_extra(tmp_path: Path, extra: str, module: str, toml: str, key: str):
    config = tmp_path / "config.toml"
    config.write_text(toml, encoding="utf-8")
    _refused(_ainode(module, "check-config", str(config)), extra, key)


def test_serve_refuses_a_postgres_store_without_the_postgres_extra(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(_PG, encoding="utf-8")
    _refused(_ainode("psycopg", "serve", "--config", str(config), "--data-dir", str(tmp_path / "data")),
             "postgres", "store.url")


def test_worker_refuses_a_postgres_store_without_the_postgres_extra(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(_PG, encoding="utf-8")
    _refused(_ainode("psycopg", "worker", "--config", str(config), "--data-dir", str(tmp_path / "data")),
             "postgres", "store.url")


def test_serve_refuses_an_engine_without_its_extra(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text(_engine("torch"), encoding="utf-8")
    _refused(_ainode("torch", "serve", "--config", str(config), "--data-dir", str(tmp_path / "data")),
             "train", "models.head.engine")


def test_every_extra_of_pyproject_is_checked():
    import tomllib

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                 ["optional-dependencies"]) - {"dev"}
    assert {e.extra for e in EXTRAS} == extras


def test_installed_packages_and_plain_configs_pass(monkeypatch, tmp_path: Path):
    import tomllib

    check_extras(parse_config({}, tmp_path))  # the embedded defaults need no extra
    config = parse_config(tomllib.loads(_engine("onnxruntime-cpu")), tmp_path)
    check_extras(config)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"pip install 'ainode\[postgres\]'"):
        parse_config(tomllib.loads(_PG), tmp_path)
