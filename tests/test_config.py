from dataclasses import replace
from pathlib import Path

import pytest

from node.config import DEFAULT_CONFIG_TOML, Config, ConfigError, load_config, parse_config
import tomllib

REPO = Path(__file__).resolve().parents[1]


def _parse(text: str):
    return parse_config(tomllib.loads(text), base_dir=Path("/base"))


def test_repository_config_equals_embedded_defaults():
    from_file = load_config(REPO / "config.toml")
    embedded = load_config(None)
    assert from_file.routes == embedded.routes
    assert from_file.destinations == embedded.destinations
    assert from_file.assembler == embedded.assembler
    assert from_file.egress == embedded.egress
    assert from_file.node.ae_title == embedded.node.ae_title


def test_match_rules_exact_list_and_regex():
    config = _parse(DEFAULT_CONFIG_TOML.replace(
        'match = { Modality = "CT", BodyPartExamined = "HEAD" }',
        'match = { Modality = ["CT", "MR"], SeriesDescription = "re:(?i)head" }',
    ))
    rule = config.routes[0].match
    assert rule["Modality"] == ("CT", "MR")
    assert rule["SeriesDescription"].search("Routine HEAD")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[node]\nae_titel = 'X'\n", "node.ae_titel"),
        ("[node]\ndicom_port = 70000\n", "node.dicom_port"),
        ("[node]\nae_title = 'THIS_TITLE_IS_TOO_LONG'\n", "node.ae_title"),
        ("[assembler]\nquiet_seconds = 'ten'\n", "assembler.quiet_seconds"),
        ("[[routes]]\nname='r'\nmodel='head-ct-hematoma'\ndestinations=['nowhere']\n", "routes[0].destinations[0]"),
        ("[[routes]]\nname='r'\nmodel='head-ct-hematoma'\ndestinations=[]\nmatch={Modality=3}\n", "routes[0].match.Modality"),
        ("[[routes]]\nname='r'\nmodel='no-such-model'\ndestinations=[]\n", "routes[0].model"),
        ("[models.x]\npack = 'head-ct-hematoma'\nengine = 'warp-drive'\n", "models.x.engine"),
        ("[[destinations]]\nname='p'\nhost='h'\nport=1\nae_title='A'\ntype='ftp'\n", "destinations[0].type"),
        ("[unknown]\n", "unknown"),
    ],
)
def test_wrong_keys_and_values_name_the_key(text, key):
    with pytest.raises(ConfigError) as info:
        _parse(text)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[node]\ndata_dir = 'data'\n[models.alt]\npack = 'head-ct-hematoma'\nweights = 'w/m.onnx'\n")
    (tmp_path / "w").mkdir()
    (tmp_path / "w/m.onnx").write_bytes(b"onnx")
    config = load_config(path)
    assert config.node.data_dir == tmp_path / "data"
    assert config.model("alt").weights == tmp_path / "w/m.onnx"
    assert config.model("head-ct-hematoma").pack == "head-ct-hematoma"


def test_repository_config_equals_embedded_defaults_in_every_section():
    from_file = load_config(REPO / "config.toml")
    embedded = load_config(None)
    # data_dir is relative to the file's folder (or the working folder): compare the rest
    assert from_file.node == replace(embedded.node, data_dir=from_file.node.data_dir)
    assert (from_file.spool, from_file.runner, from_file.models) == (embedded.spool, embedded.runner, embedded.models)


_ROUTE = "[[routes]]\nname='{name}'\nmodel='head-ct-hematoma'\ndestinations=[]\n"


def test_duplicate_route_name_is_rejected():
    with pytest.raises(ConfigError) as info:
        _parse(_ROUTE.format(name="a") + _ROUTE.format(name="b") + _ROUTE.format(name="a"))
    assert info.value.key == "routes[2].name"
    assert "'a'" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[assembler]\npoll_seconds = 0\n", "assembler.poll_seconds"),
        ("[assembler]\nquiet_seconds = -1\n", "assembler.quiet_seconds"),
        ("[spool]\nsweep_seconds = 0\n", "spool.sweep_seconds"),
        ("[spool]\nretention_hours = -1\n", "spool.retention_hours"),
        ("[egress]\nbackoff_seconds = 0\n", "egress.backoff_seconds"),
        ("[egress]\nbackoff_seconds = 5\nbackoff_max_seconds = 1\n", "egress.backoff_max_seconds"),
        ("[egress]\ntimeout_seconds = 0.0\n", "egress.timeout_seconds"),
        ("[egress]\nmax_attempts = 0\n", "egress.max_attempts"),
        ("[egress]\nmax_attempts = 2.5\n", "egress.max_attempts"),
        (_ROUTE.format(name="r") + "quiet_seconds = -5\n", "routes[0].quiet_seconds"),
    ],
)
def test_zero_and_negative_periods_are_rejected(text, key):
    with pytest.raises(ConfigError) as info:
        _parse(text)
    assert info.value.key == key


def test_zero_retention_keeps_everything_and_zero_route_quiet_is_allowed():
    config = _parse("[spool]\nretention_hours = 0\n" + _ROUTE.format(name="r") + "quiet_seconds = 0\n")
    assert config.spool.retention_hours == 0
    assert config.routes[0].quiet_seconds == 0.0


def test_match_key_must_be_a_routing_attribute():
    from node.pipeline.index import ROUTING_KEYWORDS

    with pytest.raises(ConfigError) as info:
        _parse(_ROUTE.format(name="r") + "match = { PatientName = 'X' }\n")
    assert info.value.key == "routes[0].match.PatientName"
    assert all(keyword in str(info.value) for keyword in ROUTING_KEYWORDS)
    for keyword in ROUTING_KEYWORDS:  # every recorded attribute can be matched on
        assert keyword in _parse(_ROUTE.format(name="r") + f"match = {{ {keyword} = 'x' }}\n").routes[0].match


def test_missing_weights_file_is_rejected(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[models.alt]\npack = 'head-ct-hematoma'\nweights = 'w/missing.onnx'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "models.alt.weights"
    assert str(tmp_path / "w/missing.onnx") in str(info.value)
    (tmp_path / "w").mkdir()
    with pytest.raises(ConfigError):  # a folder is not a weights file
        _parse(f"[models.alt]\npack = 'head-ct-hematoma'\nweights = '{tmp_path / 'w'}'\n")


def test_new_keys_have_their_defaults():
    from node.config import RunnerConfig

    config = _parse("")
    assert (config.node.max_associations, config.node.network_timeout_seconds) == (32, 30.0)
    assert (config.spool.min_free_mb, config.spool.min_free_percent, config.spool.max_dataset_mb) == (512, 2, 1024)
    assert config.runner == RunnerConfig(workers=1, lease_seconds=60.0)
    assert Config().runner == RunnerConfig()


def test_new_keys_are_read():
    config = _parse(
        "[node]\nmax_associations = 4\nnetwork_timeout_seconds = 2.5\n"
        "[spool]\nmin_free_mb = 0\nmin_free_percent = 100\nmax_dataset_mb = 0.5\n"
        "[runner]\nworkers = 3\nlease_seconds = 5\n"
    )
    assert (config.node.max_associations, config.node.network_timeout_seconds) == (4, 2.5)
    assert (config.spool.min_free_mb, config.spool.min_free_percent, config.spool.max_dataset_mb) == (0, 100, 0.5)
    assert (config.runner.workers, config.runner.lease_seconds) == (3, 5.0)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[node]\nmax_associations = 0\n", "node.max_associations"),
        ("[node]\nmax_associations = 1.5\n", "node.max_associations"),
        ("[node]\nnetwork_timeout_seconds = 0\n", "node.network_timeout_seconds"),
        ("[node]\nnetwork_timeout_seconds = 'slow'\n", "node.network_timeout_seconds"),
        ("[spool]\nmin_free_mb = -1\n", "spool.min_free_mb"),
        ("[spool]\nmin_free_percent = -0.1\n", "spool.min_free_percent"),
        ("[spool]\nmin_free_percent = 101\n", "spool.min_free_percent"),
        ("[spool]\nmax_dataset_mb = 0\n", "spool.max_dataset_mb"),
        ("[runner]\nworkers = 0\n", "runner.workers"),
        ("[runner]\nworkers = true\n", "runner.workers"),
        ("[runner]\nlease_seconds = 0\n", "runner.lease_seconds"),
        ("[runner]\nleases = 1\n", "runner.leases"),
        ("runner = 3\n", "runner"),
    ],
)
def test_new_keys_are_validated(text, key):
    with pytest.raises(ConfigError) as info:
        _parse(text)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_embedded_defaults_are_the_packaged_toml_file():
    from importlib import resources

    assert DEFAULT_CONFIG_TOML == resources.files("node.config").joinpath("defaults.toml").read_text(encoding="utf-8")


def test_choices_are_enums_equal_to_their_words():
    from node.config import DestinationType, EngineName, LogLevel, OnDuplicate, OnLate, RouteLevel

    config = _parse("[node]\nlog_level = 'debug'\n[ingest]\non_duplicate = 'replace'\n"
                    "[models.x]\npack = 'head-ct-hematoma'\nengine = 'onnxruntime-cpu'\n")
    assert config.node.log_level is LogLevel.DEBUG and config.node.log_level == "DEBUG"
    assert config.ingest.on_duplicate is OnDuplicate.REPLACE and config.ingest.on_duplicate == "replace"
    assert config.model("x").engine is EngineName.ONNXRUNTIME_CPU and config.model("x").engine == "onnxruntime-cpu"
    route, destination = load_config(None).routes[0], load_config(None).destinations[0]
    assert route.level is RouteLevel.SERIES and route.on_late is OnLate.RERUN and route.level == "series"
    assert destination.type is DestinationType.DIMSE and destination.type == "dimse"
