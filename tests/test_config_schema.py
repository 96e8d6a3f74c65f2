"""The schema is the one source: the shipped config.yaml documents every key with its
default, defaults elsewhere read it, and the keys added for coming features are checked."""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from homepoll.config import Config, ConfigError, StorageSettings, load_config
from homepoll.config.loader import default_of
from homepoll.config.schema import keys
from homepoll.storage import Storage

SHIPPED = Path(__file__).resolve().parents[1] / "config.yaml"
KEY = "Zk3hQ9vLr2XwYb7TtN4mPq8sJd6cEa1fGu5oHiWx"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOMEPOLL_HUE_USERNAME", "CREDENTIALS_DIRECTORY", "HOMEPOLL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)


def _schema_keys(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """(YAML key path, field) for every key and section of the schema, depth first."""
    found = []
    for f in keys(cls):
        under = f.metadata.get("under")
        path = ".".join(p for p in (prefix, under, f.name) if p)
        found.append((path, f))
        if "section" in f.metadata and not f.metadata.get("inherit"):
            found.extend(_schema_keys(f.metadata["section"], path))
    return found


def _yaml_form(f: dataclasses.Field) -> Any:
    """How config.yaml must spell the default of ``f``."""
    if f.metadata.get("inherit"):
        return {}  # overrides of the global section: none shipped
    if "yaml_default" in f.metadata:
        return f.metadata["yaml_default"]
    if f.metadata.get("data_file"):
        return None
    default = default_of(f)
    if isinstance(default, Path):
        return str(default)
    if isinstance(default, tuple):
        return list(default)
    return default


def _shipped_nodes() -> tuple[list[str], dict[str, yaml.Node]]:
    text = SHIPPED.read_text(encoding="utf-8")
    nodes: dict[str, yaml.Node] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        for key_node, value_node in node.value:
            path = f"{prefix}.{key_node.value}" if prefix else key_node.value
            nodes[path] = key_node
            if isinstance(value_node, yaml.MappingNode) and value_node.value:
                walk(value_node, path)

    walk(yaml.compose(text), "")
    return text.splitlines(), nodes


SCHEMA_KEYS = _schema_keys(Config)


@pytest.mark.parametrize(("path", "f"), SCHEMA_KEYS, ids=[p for p, _ in SCHEMA_KEYS])
def test_shipped_config_documents_every_key_with_its_default(path: str, f: Any) -> None:
    lines, nodes = _shipped_nodes()
    assert path in nodes, f"config.yaml lacks {path}"
    assert f.metadata["doc"].strip(), f"schema: {path} has no doc"
    if "section" in f.metadata and not f.metadata.get("inherit"):
        return  # a section: each of its keys is documented
    line = nodes[path].start_mark.line
    above = lines[line - 1].strip() if line else ""
    assert above.startswith("#"), f"config.yaml: {path} (line {line + 1}) has no comment above"
    shipped: Any = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    for part in path.split("."):
        shipped = shipped[part]
    assert shipped == _yaml_form(f), (
        f"config.yaml: {path} is {shipped!r}, schema says {_yaml_form(f)!r}"
    )


def test_the_doc_walk_sees_every_key_in_the_shipped_file() -> None:
    """Guards the test above: every key the file holds is one the schema knows."""
    _lines, nodes = _shipped_nodes()
    known = {path for path, _f in SCHEMA_KEYS} | {"collectors"}
    assert set(nodes) - known == set()
    assert len(known) > 50  # the whole schema was walked, sections included


def test_storage_default_commit_interval_is_the_config_default() -> None:
    default = inspect.signature(Storage).parameters["commit_interval"].default
    assert default == StorageSettings().commit_interval == 300


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return caught.value.problems


def test_feature_keys_load_with_their_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, "collectors: {amazon_aqm: {domain: amazon.co.uk}}\n")
    assert config.hue.api == "auto" and config.hue.transport == "auto"
    assert config.hue.ca_file is None
    assert config.amazon_aqm.auth_file == tmp_path / "data" / "amazon_auth.json"
    assert config.amazon_aqm.auth_base_url == "https://api.amazon.co.uk"
    assert config.amazon_aqm.include == ("air_quality_monitor",)
    assert config.alerts.offline_after == 3600 and config.alerts.battery_low == 15
    assert config.web.enabled and config.web.listen == "127.0.0.1:8321"
    mqtt = config.mqtt
    assert (mqtt.enabled, mqtt.host, mqtt.port, mqtt.username) == (False, "localhost", 1883, None)
    assert (mqtt.password_file, mqtt.tls, mqtt.ca_file, mqtt.events) == (None, False, None, False)
    assert (mqtt.base_topic, mqtt.discovery_prefix) == ("homepoll", "homeassistant")


def test_feature_keys_are_normalised_and_resolved(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")
    config = _load(
        tmp_path,
        """
        collectors:
          hue: {api: V2, transport: HTTPS, ca_file: ca.pem}
          amazon_aqm:
            auth_file: secrets/auth.json
            auth_base_url: "http://127.0.0.1:9/"
            include: [temperature_sensors, air_quality_monitor, temperature_sensors]
        web: {listen: "[::1]:8080"}
        mqtt: {username: pi, password_file: mqtt.pw, ca_file: ca.pem, discovery_prefix: null}
        """,
    )
    assert (config.hue.api, config.hue.transport) == ("v2", "https")
    assert config.hue.ca_file == tmp_path / "ca.pem"
    assert config.amazon_aqm.auth_file == tmp_path / "secrets" / "auth.json"
    assert config.amazon_aqm.auth_base_url == "http://127.0.0.1:9"
    assert config.amazon_aqm.include == ("temperature_sensors", "air_quality_monitor")
    assert config.web.listen == "[::1]:8080"
    assert config.mqtt.password_file == tmp_path / "mqtt.pw"
    assert config.mqtt.ca_file == tmp_path / "ca.pem"
    assert config.mqtt.discovery_prefix is None


def test_secret_files_fall_back_to_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("mqtt_password", "amazon_auth.json"):
        (creds / name).write_text("x", encoding="utf-8")
    text = "mqtt: {username: pi, password_file: mqtt.pw}\n"
    before = _load(tmp_path, text)
    assert before.mqtt.password_file == tmp_path / "mqtt.pw"
    assert before.amazon_aqm.auth_file == tmp_path / "data" / "amazon_auth.json"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    after = _load(tmp_path, text)
    assert after.mqtt.password_file == creds / "mqtt_password"
    assert after.amazon_aqm.auth_file == creds / "amazon_auth.json"
    (tmp_path / "mqtt.pw").write_text("own", encoding="utf-8")
    assert _load(tmp_path, text).mqtt.password_file == tmp_path / "mqtt.pw"
