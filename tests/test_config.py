"""config.yaml loading: defaults, path resolution, secrets, and one clear line per problem."""

from __future__ import annotations

import dataclasses
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from homepoll.config import (
    AlertSettings,
    AmazonAqmSettings,
    BackoffSettings,
    Config,
    ConfigError,
    HueSettings,
    LogSettings,
    RetrySettings,
    StorageSettings,
    default_config_path,
    describe_config,
    load_config,
    secret_problems,
)

SHIPPED = Path(__file__).resolve().parents[1] / "config.yaml"
KEY = "Zk3hQ9vLr2XwYb7TtN4mPq8sJd6cEa1fGu5oHiWx"  # looks like a real 40-char Hue key


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own environment must not leak into these tests."""
    for name in ("HOMEPOLL_HUE_USERNAME", "CREDENTIALS_DIRECTORY", "HOMEPOLL_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def write_config(folder: Path, text: str, name: str = "config.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    return caught.value.problems


def warnings_of(path: Path) -> list[str]:
    """A credential problem is a warning: the config loads (issue 11 item 12)."""
    return list(load_config(path).credential_warnings)


def expected_defaults(config_path: Path, username: str | None) -> Config:
    data = config_path.parent / "data"
    return Config(
        path=config_path,
        data_dir=data,
        log=LogSettings(file=data / "homepoll.log"),
        storage=StorageSettings(path=data / "readings.db"),
        retry=RetrySettings(),
        backoff=BackoffSettings(),
        alerts=AlertSettings(),
        hue=HueSettings(username_file=data / "hue_username", username=username),
        amazon_aqm=AmazonAqmSettings(
            cookies_file=data / "amazon_cookies.json", auth_file=data / "amazon_auth.json"
        ),
    )


# --------------------------------------------------------------------------- good configs


def test_shipped_config_loads_in_place_and_equals_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)
    config = load_config(SHIPPED)
    assert config == expected_defaults(SHIPPED, KEY)
    assert config.hue.username == KEY
    assert config.hue.username_source == "HOMEPOLL_HUE_USERNAME"
    assert config.hue.enabled and config.hue.bridge == "192.168.1.2"
    assert not config.amazon_aqm.enabled


def test_shipped_config_copy_reads_key_from_username_file(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    shutil.copy(SHIPPED, config_path)
    key_file = tmp_path / "data" / "hue_username"
    key_file.parent.mkdir()
    key_file.write_text(f"  {KEY}\n", encoding="utf-8")

    config = load_config(config_path)

    assert config == expected_defaults(config_path, KEY)
    assert config.hue.username_source == str(key_file)


def test_shipped_values_are_exactly_the_builtin_defaults(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped" / "config.yaml"
    shipped.parent.mkdir()
    shutil.copy(SHIPPED, shipped)
    bare = write_config(tmp_path / "bare", "{}\n")
    a = load_config(shipped, require_secrets=False)
    b = load_config(bare, require_secrets=False)
    assert dataclasses.replace(b, path=a.path, data_dir=a.data_dir) == dataclasses.replace(
        a,
        log=dataclasses.replace(a.log, file=b.log.file),
        storage=dataclasses.replace(a.storage, path=b.storage.path),
        hue=dataclasses.replace(a.hue, username_file=b.hue.username_file),
        amazon_aqm=dataclasses.replace(
            a.amazon_aqm, cookies_file=b.amazon_aqm.cookies_file, auth_file=b.amazon_aqm.auth_file
        ),
    )


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    absolute_key = tmp_path / "secrets" / "hue.key"
    absolute_key.parent.mkdir()
    absolute_key.write_text(KEY, encoding="utf-8")
    config = load_config(
        write_config(
            etc,
            f"""
            data_dir: state
            log: {{file: ../logs/h.log}}
            storage: {{path: db/r.db}}
            collectors:
              hue: {{username_file: "{absolute_key}"}}
              amazon_aqm: {{cookies_file: cookies.json}}
            """,
        ),
        require_secrets=False,
    )
    assert config.path == etc / "config.yaml"
    assert config.data_dir == etc / "state"
    assert config.log.file == tmp_path / "logs" / "h.log"
    assert config.storage.path == etc / "db" / "r.db"
    assert config.hue.username_file == absolute_key
    assert config.hue.username == KEY
    assert config.amazon_aqm.cookies_file == etc / "cookies.json"


def test_unset_files_follow_data_dir_and_dash_means_stderr(tmp_path: Path) -> None:
    state = tmp_path / "var" / "lib" / "homepoll"
    config = load_config(
        write_config(tmp_path / "conf", f'data_dir: "{state}"\nlog: {{file: "-"}}\n'),
        require_secrets=False,
    )
    assert config.data_dir == state
    assert config.log.file is None
    assert config.storage.path == state / "readings.db"
    assert config.hue.username_file == state / "hue_username"
    assert config.amazon_aqm.cookies_file == state / "amazon_cookies.json"


def test_per_collector_retry_is_merged_key_by_key(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            """
            retry: {max_attempts: 6, jitter: 0, max_delay: 8}
            collectors:
              hue:
                enabled: false
                retry: {max_attempts: 2, attempt_timeout: 2.5}
              amazon_aqm:
                enabled: false
                retry: {}
            """,
        )
    )
    assert config.retry == RetrySettings(max_attempts=6, jitter=0.0, max_delay=8.0)
    assert config.hue.retry == RetrySettings(
        max_attempts=2, jitter=0.0, max_delay=8.0, attempt_timeout=2.5
    )
    assert config.amazon_aqm.retry == config.retry


def test_collector_sections_may_be_just_enabled_false(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, "collectors:\n  hue: {enabled: false}\n  amazon_aqm:\n")
    )
    assert not config.hue.enabled and config.hue.username is None
    assert config.hue.bridge == "192.168.1.2"
    assert not config.amazon_aqm.enabled


def test_values_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "notify").write_text("#!/bin/sh\n", encoding="utf-8")
    (tmp_path / "bin" / "notify").chmod(0o755)  # alerts.command must exist (issue 11 item 3)
    config = load_config(
        write_config(
            tmp_path,
            """
            log: {level: debug, format: JSON}
            alerts: {command: './bin/notify --title "homepoll alert"'}
            collectors:
              hue:
                enabled: false
                bridge: "hue.local:8080"
                sensors: [Hallway, 5]
                names: {5: Kitchen, "00:17:88:01:02:03:04:05-02-0402": Porch}
              amazon_aqm: {domain: Amazon.co.uk, base_url: "http://127.0.0.1:8123/"}
            """,
        )
    )
    assert config.log.level == "DEBUG"
    assert config.log.format == "json"
    assert config.alerts.command == (str(tmp_path / "bin" / "notify"), "--title", "homepoll alert")
    assert config.hue.bridge == "hue.local:8080"
    assert config.hue.sensors == ("Hallway", "5")
    assert config.hue.names == {"5": "Kitchen", "00:17:88:01:02:03:04:05-02-0402": "Porch"}
    assert config.amazon_aqm.domain == "amazon.co.uk"
    assert config.amazon_aqm.base_url == "http://127.0.0.1:8123"


def test_alert_command_list_and_amazon_base_url_default(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            """
            alerts: {command: [/usr/bin/logger, -t, homepoll]}
            collectors: {hue: {enabled: false}, amazon_aqm: {domain: amazon.de}}
            """,
        )
    )
    assert config.alerts.command == ("/usr/bin/logger", "-t", "homepoll")
    assert config.amazon_aqm.base_url == "https://alexa.amazon.de"


# --------------------------------------------------------------------------- secrets


def test_env_key_wins_over_username_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hue_username").write_text("fromfile", encoding="utf-8")
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", f" {KEY}\n")
    config = load_config(write_config(tmp_path, "{}\n"))
    assert config.hue.username == KEY
    assert config.hue.username_source == "HOMEPOLL_HUE_USERNAME"


def test_username_file_wins_over_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hue_username").write_text("fromcredentials", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hue_username").write_text("fromfile\n", encoding="utf-8")
    assert load_config(write_config(tmp_path, "{}\n")).hue.username == "fromfile"


def test_credentials_directory_is_used_when_username_file_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hue_username").write_text("fromcredentials\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(write_config(tmp_path, "{}\n"))
    assert config.hue.username == "fromcredentials"
    assert config.hue.username_source == str(creds / "hue_username")


def test_amazon_cookies_from_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)
    path = write_config(tmp_path, "collectors: {amazon_aqm: {enabled: true}}\n")
    assert warnings_of(path) == [
        f"collectors.amazon_aqm.cookies_file: {tmp_path / 'data' / 'amazon_cookies.json'} "
        "not found; import cookies with: homepoll amazon-cookies FILE"
    ]
    # The import command (require_secrets=False) keeps the writable configured path.
    assert load_config(path, require_secrets=False).amazon_aqm.cookies_file == (
        tmp_path / "data" / "amazon_cookies.json"
    )

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "amazon_cookies.json").write_text("{}", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_config(path).amazon_aqm.cookies_file == creds / "amazon_cookies.json"

    own = tmp_path / "data" / "amazon_cookies.json"
    own.parent.mkdir()
    own.write_text("{}", encoding="utf-8")
    assert load_config(path).amazon_aqm.cookies_file == own


def test_missing_hue_key_is_one_warning_with_the_pairing_command(tmp_path: Path) -> None:
    path = write_config(tmp_path, "collectors: {hue: {bridge: 10.0.0.7}}\n")
    assert warnings_of(path) == [
        f"collectors.hue.username_file: {tmp_path / 'data' / 'hue_username'} not found; "
        "pair with the bridge first: homepoll hue-pair --bridge 10.0.0.7"
    ]
    config = load_config(path)
    assert config.hue.username is None
    assert config.hue.username_problem == warnings_of(path)[0]  # the collector's auth alert
    assert secret_problems(config, "hue") == warnings_of(path)
    assert load_config(path, require_secrets=False).credential_warnings == ()


def test_unreadable_hue_key_file_names_the_key_path_not_the_content(tmp_path: Path) -> None:
    key_dir = tmp_path / "data" / "hue_username"
    key_dir.mkdir(parents=True)  # a folder where the key file should be: cannot be read
    problems = warnings_of(write_config(tmp_path, "{}\n"))
    assert len(problems) == 1
    assert problems[0].startswith(f"collectors.hue.username_file: {key_dir} cannot be read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied_hue_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "hue_username"
    key_file.parent.mkdir()
    key_file.write_text(KEY, encoding="utf-8")
    key_file.chmod(0)
    problems = warnings_of(write_config(tmp_path, "{}\n"))
    assert problems == [
        f"collectors.hue.username_file: {key_file} cannot be read (permission denied)"
    ]


def test_garbled_hue_key_file_is_reported_without_its_content(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "hue_username"
    key_file.parent.mkdir()
    key_file.write_text(f"{KEY}\nsecond line {KEY}\n", encoding="utf-8")
    problems = warnings_of(write_config(tmp_path, "{}\n"))
    assert len(problems) == 1
    assert problems[0].startswith("collectors.hue.username_file: ")
    assert KEY not in problems[0]


def test_describe_config_masks_the_hue_key_and_shows_effective_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)
    config = load_config(write_config(tmp_path, "collectors: {hue: {retry: {max_attempts: 9}}}\n"))
    text = describe_config(config)
    assert KEY not in text
    assert "username: '***'" in text
    assert "max_attempts: 9" in text and "max_attempts: 4" in text
    assert str(tmp_path / "data" / "readings.db") in text
    assert str(tmp_path / "data" / "homepoll.log") in text
    assert KEY not in repr(config)

    monkeypatch.delenv("HOMEPOLL_HUE_USERNAME")
    unset = load_config(config.path, require_secrets=False)
    assert "username: (not set)" in describe_config(unset)


def test_default_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_config_path() == Path("config.yaml")
    monkeypatch.setenv("HOMEPOLL_CONFIG", str(tmp_path / "x.yaml"))
    assert default_config_path() == tmp_path / "x.yaml"


# --------------------------------------------------------------------------- bad configs

BAD_VALUES = [
    # (yaml, key path, a fragment of the message)
    (
        "collectors: {hue: {retry: {max_attempts: three}}}",
        "collectors.hue.retry.max_attempts",
        'must be an integer >= 1, got "three"',
    ),
    ("retry: {max_attempts: true}", "retry.max_attempts", "integer >= 1, got true"),
    ("retry: {max_attempts: 2.5}", "retry.max_attempts", "integer >= 1, got 2.5"),
    ("collectors: {hue: {interval: yes}}", "collectors.hue.interval", "got true"),
    ("collectors: {hue: {interval: 0.5}}", "collectors.hue.interval", "number >= 1, got 0.5"),
    ("collectors: {hue: {interval: .inf}}", "collectors.hue.interval", "number >= 1"),
    ("retry: {jitter: 1.5}", "retry.jitter", "between 0 and 1, got 1.5"),
    (
        "collectors: {amazon_aqm: {retry: {poll_budget: -0.1}}}",
        "collectors.amazon_aqm.retry.poll_budget",
        "between 0 and 1",
    ),
    ("retry: {multiplier: 0.5}", "retry.multiplier", ">= 1"),
    ("retry: {initial_delay: -1}", "retry.initial_delay", ">= 0, got -1"),
    ("retry: {attempt_timeout: 0}", "retry.attempt_timeout", "> 0"),
    ("retry: {initial_delay: 10, max_delay: 5}", "retry.max_delay", ">= initial_delay (10)"),
    (
        "retry: {max_delay: 5}\ncollectors: {hue: {retry: {initial_delay: 6}}}",
        "collectors.hue.retry.initial_delay",
        "<= max_delay (5)",
    ),
    ("log: {level: VERBOSE}", "log.level", "one of DEBUG, INFO, WARNING, ERROR"),
    ("log: {format: xml}", "log.format", "text or json"),
    ("log: {max_bytes: 100}", "log.max_bytes", ">= 1024, got 100"),
    ("log: {backups: 1.5}", "log.backups", "integer >= 0"),
    ("log: verbose", "log", "must be a mapping"),
    ("storage: {retention_days: -1}", "storage.retention_days", ">= 0"),
    ("storage: {commit_interval: soon}", "storage.commit_interval", '"soon"'),
    ("backoff: {failure_threshold: 0}", "backoff.failure_threshold", "integer >= 1"),
    ("backoff: {max_interval: 0.5}", "backoff.max_interval", ">= 1"),
    ("data_dir: 5", "data_dir", "non-empty path, got 5"),
    ("data_dir: 2024-01-01", "data_dir", "got a date"),
    ("colectors: {}", "colectors", 'did you mean "collectors"?'),
    ("collectors: {hue: {intervall: 30}}", "collectors.hue.intervall", 'did you mean "interval"?'),
    ("retry: {max_attempt: 3}", "retry.max_attempt", 'did you mean "max_attempts"?'),
    ("collectors: {hue: {colour: red}}", "collectors.hue.colour", "unknown key"),
    ("hue: {enabled: false}", "hue", "did you mean collectors.hue?"),
    (
        "collectors: {hue: {max_attempts: 3}}",
        "collectors.hue.max_attempts",
        "did you mean collectors.hue.retry.max_attempts?",
    ),
    ("collectors: {nest: {}}", "collectors.nest", "expected one of: hue, amazon_aqm"),
    ("1: x", "1", "unknown key"),
    ("collectors: {hue: [a]}", "collectors.hue", "must be a mapping"),
    (
        'collectors: {hue: {bridge: "http://192.168.1.2"}}',
        "collectors.hue.bridge",
        "host or host:port",
    ),
    ("collectors: {hue: {bridge: '10.0.0.2:99999'}}", "collectors.hue.bridge", "port"),
    ("collectors: {hue: {bridge: ''}}", "collectors.hue.bridge", "host or host:port"),
    ("collectors: {hue: {bridge: 10.0.0.2/api}}", "collectors.hue.bridge", "host or host:port"),
    ("collectors: {hue: {sensors: Hallway}}", "collectors.hue.sensors", "must be a list"),
    ("collectors: {hue: {sensors: [ok, true]}}", "collectors.hue.sensors[1]", "got true"),
    ("collectors: {hue: {names: {Hall: 5}}}", "collectors.hue.names.Hall", "display name"),
    ("collectors: {hue: {enabled: 'yes please'}}", "collectors.hue.enabled", "true or false"),
    (
        "collectors: {amazon_aqm: {domain: www.amazon.com}}",
        "collectors.amazon_aqm.domain",
        '"amazon.co.uk"',
    ),
    (
        "collectors: {amazon_aqm: {base_url: alexa.amazon.com}}",
        "collectors.amazon_aqm.base_url",
        "http:// or https://",
    ),
    ("alerts: {command: 42}", "alerts.command", "a command line, a list of arguments, or null"),
    ("alerts: {command: [notify, 5]}", "alerts.command", "only strings"),
    ("alerts: {command: 'notify \"unclosed'}", "alerts.command", "cannot split"),
    ("alerts: {command: ''}", "alerts.command", 'got ""'),
    # keys for coming features: checked now, acted on when wired
    ("collectors: {hue: {api: v3}}", "collectors.hue.api", "one of auto, v1, v2"),
    ("collectors: {hue: {transport: ftp}}", "collectors.hue.transport", "one of auto, https"),
    (
        "collectors: {hue: {api: v2, transport: http}}",
        "collectors.hue.transport",
        "api v2 needs HTTPS",
    ),
    ("collectors: {hue: {ca_file: nope.pem}}", "collectors.hue.ca_file", "not an existing file"),
    ("collectors: {amazon_aqm: {include: []}}", "collectors.amazon_aqm.include", "one or more"),
    (
        "collectors: {amazon_aqm: {include: [air_quality_monitor, plugs]}}",
        "collectors.amazon_aqm.include[1]",
        'got "plugs"',
    ),
    (
        "collectors: {amazon_aqm: {auth_base_url: api.amazon.com}}",
        "collectors.amazon_aqm.auth_base_url",
        "http:// or https://",
    ),
    ("alerts: {offline_after: 0}", "alerts.offline_after", ">= 1"),
    ("alerts: {battery_low: 101}", "alerts.battery_low", "between 0 and 100"),
    ("web: {enabled: maybe}", "web.enabled", "true or false"),
    ("web: {listen: 8321}", "web.listen", "host:port"),
    ("web: {listen: 0.0.0.0}", "web.listen", "the port is missing"),
    ("web: {listen: '127.0.0.1:0'}", "web.listen", "1 to 65535"),
    ("web: {listen: 'http://127.0.0.1:8321'}", "web.listen", "without http://"),
    ("mqtt: {port: 70000}", "mqtt.port", "an integer from 1 to 65535"),
    ("mqtt: {host: 'broker:1883'}", "mqtt.host", "port:"),
    ("mqtt: {base_topic: 'home/#'}", "mqtt.base_topic", "without wildcards"),
    ("mqtt: {discovery_prefix: ''}", "mqtt.discovery_prefix", "or null"),
    ("mqtt: {password_file: pw}", "mqtt.password_file", "needs username"),
    ("mqtt: {username: ''}", "mqtt.username", "non-empty"),
    ("mqtt: {tls: 1}", "mqtt.tls", "true or false"),
    ("mqtt: {protocol: 4}", "mqtt.protocol", '"3.1.1" or "5"'),
    ("mqtt: {evnts: true}", "mqtt.evnts", 'did you mean "events"?'),
    ("mqtt: {ca_file: ''}", "mqtt.ca_file", "non-empty path"),
    ("listen: 1.2.3.4:5", "listen", "did you mean web.listen?"),
    ("bridge: 10.0.0.2", "bridge", "did you mean collectors.hue.bridge?"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), BAD_VALUES, ids=[c[1] for c in BAD_VALUES])
def test_bad_value_gives_exactly_one_line_naming_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, fragment: str
) -> None:
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)
    problems = problems_of(write_config(tmp_path, text + "\n"))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: "), problems
    assert fragment in problems[0], problems


def test_the_contract_example_line_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEPOLL_HUE_USERNAME", KEY)
    path = write_config(tmp_path, "collectors: {hue: {retry: {max_attempts: three}}}\n")
    assert problems_of(path) == [
        'collectors.hue.retry.max_attempts: must be an integer >= 1, got "three"'
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        log: {level: LOUD, backups: -1}
        retry: {jiter: 0.1}
        collectors:
          hue: {interval: 0}
        """,
    )
    problems = problems_of(path)
    keys = [line.split(":", 1)[0] for line in problems]
    # The user fixes everything in one round (a missing key is a warning, not among them).
    assert sorted(keys) == [
        "collectors.hue.interval",
        "log.backups",
        "log.level",
        "retry.jiter",
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "config file is empty"),
        ("# only comments\n\n", "config file is empty"),
        ("- data_dir: data\n", "top level must be a mapping"),
        ("just words\n", 'top level must be a mapping of settings (key: value), got "just words"'),
        ("data_dir: a\ndata_dir: b\n", "line 2: duplicate key 'data_dir'"),
        (b"data_dir: \xff\xfe\n", "not UTF-8 text"),
    ],
    ids=["empty", "comments-only", "list", "scalar", "duplicate-key", "not-utf8"],
)
def test_bad_file_contents(tmp_path: Path, content: str | bytes, fragment: str) -> None:
    path = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(str(path))
    assert fragment in problems[0]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """\
        data_dir: data
        log:
          level: INFO
        retry:
          max_attempts: 4
          initial_delay: 1.0
          jitter: [0.3
        """,
    )
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path} line 8: "), problems


def test_yaml_bad_indentation_names_the_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "log:\n  level: INFO\n   format: text\n")
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path} line 3: "), problems


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of(path) == [f"{path}: config file not found"]


def test_unreadable_config_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        path = tmp_path / "config.yaml"
        path.mkdir()  # root reads any file; a folder is unreadable as a config file even so
        expected = f"{path}: is a directory, not a config file"
    else:
        path = write_config(tmp_path, "{}\n")
        path.chmod(0)
        expected = f"{path}: cannot read config file (permission denied)"
    assert problems_of(path) == [expected]
