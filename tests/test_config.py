from pathlib import Path

import pytest

from node.config import DEFAULT_CONFIG_TOML, ConfigError, load_config, parse_config
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
    config = load_config(path)
    assert config.node.data_dir == tmp_path / "data"
    assert config.model("alt").weights == tmp_path / "w/m.onnx"
    assert config.model("head-ct-hematoma").pack == "head-ct-hematoma"
