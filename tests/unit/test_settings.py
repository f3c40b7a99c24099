"""Settings: flag over environment over default; the token source reads the file every time."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import kopf
import pytest
from pydantic import SecretStr

from akua_operator import settings as settings_mod
from akua_operator.handlers.akuacluster import configure_kopf
from akua_operator.kube import CredentialsError, KubeIO, TokenSource


def parse(argv: list[str], env: dict[str, str]) -> settings_mod.Settings:
    parser = argparse.ArgumentParser()
    settings_mod.add_arguments(parser)
    return settings_mod.from_args(parser.parse_args(argv), env)


def test_defaults() -> None:
    s = parse([], {})
    assert s.api_url == "https://api.akua.dev/v1"
    assert s.wait_timeout == 5
    assert s.standalone is True
    assert s.namespaces == ()


def test_flag_beats_env_beats_default() -> None:
    env = {"AKUA_API_URL": "http://env/v1", "AKUA_WAIT_TIMEOUT": "3", "AKUA_NAMESPACES": "a,b"}
    s = parse(["--wait-timeout", "7"], env)
    assert s.api_url == "http://env/v1"
    assert s.wait_timeout == 7
    assert s.namespaces == ("a", "b")
    assert parse(["--namespace", "x", "-n", "y"], env).namespaces == ("x", "y")


def test_wait_timeout_is_clamped_to_the_contract() -> None:
    assert parse(["--wait-timeout", "600"], {}).wait_timeout == 60
    assert parse(["--wait-timeout", "0"], {}).wait_timeout == 1


def test_peering_name_turns_off_standalone() -> None:
    assert parse([], {"AKUA_PEERING_NAME": "akua"}).standalone is False


def test_markdown_table_lists_every_option() -> None:
    table = settings_mod.markdown_table()
    for opt in settings_mod.OPTIONS:
        assert opt.env in table
        assert opt.flag in table


def test_token_file_is_read_on_every_use(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("sk_one\n")
    source = TokenSource.from_env({"AKUA_TOKEN_FILE": str(path)})
    assert source.read().get_secret_value() == "sk_one"
    path.write_text("sk_two")
    assert source.read().get_secret_value() == "sk_two"


def test_missing_token_is_a_clear_error_without_secret() -> None:
    with pytest.raises(CredentialsError, match="AKUA_TOKEN"):
        TokenSource.from_env({}).read()
    source = TokenSource.from_env({"AKUA_TOKEN": "sk_secret"})
    assert "sk_secret" not in repr(source)


def test_each_replica_picks_its_own_peering_priority() -> None:
    # kopf pauses every replica that shares the highest priority: two replicas started alike
    # (same flags, same environment) must not tie.
    env = {"AKUA_PEERING_NAME": "akua"}
    first, second = parse([], env).peering_priority, parse([], env).peering_priority
    assert first is not None and second is not None
    assert first != second
    assert 0 < first < 2**53 and 0 < second < 2**53  # exact in any JSON reader


def test_the_replica_that_started_first_keeps_the_lead() -> None:
    # A restarted or newly rolled-out replica waits behind the running one instead of
    # taking over from it.
    started = 1_795_000_000.0
    older = [settings_mod.default_priority(started) for _ in range(20)]
    newer = [settings_mod.default_priority(started + 0.001) for _ in range(20)]
    assert min(older) > max(newer)
    assert settings_mod.default_priority(started + 3600) < min(newer)


def test_peering_priority_can_be_set() -> None:
    assert parse([], {"AKUA_PEERING_PRIORITY": "7"}).peering_priority == 7
    assert parse(["--peering-priority", "9"], {"AKUA_PEERING_PRIORITY": "7"}).peering_priority == 9


def test_namespaced_operator_does_not_scan_the_cluster() -> None:
    # Listing Namespaces/CRDs needs cluster-scope rights a namespaced install does not have.
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, parse(["--namespace", "team-a"], {}))
    assert kopf_settings.scanning.disabled is True
    assert kopf_settings.persistence.finalizer == "akua.dev/finalizer"

    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, parse(["--all-namespaces"], {}))
    assert kopf_settings.scanning.disabled is False


@dataclass(frozen=True)
class ProbedTokenSource(TokenSource):
    """Records whether each read ran on a thread with a running event loop."""

    on_loop: list[bool] = field(default_factory=list)

    def read(self) -> SecretStr:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        return super().read()


async def test_the_token_file_is_read_off_the_event_loop(tmp_path: Path) -> None:
    # A slow or hung file (a network mount, a FIFO) must not freeze every other resource.
    path = tmp_path / "token"
    path.write_text("sk_from_file\n")
    source = ProbedTokenSource(token_file=path)
    creds = await KubeIO(None).credentials("ns", None, source)
    assert creds.token.get_secret_value() == "sk_from_file"
    assert source.on_loop == [False]


def test_default_credentials_scope_follows_the_watched_namespaces_unless_given() -> None:
    from akua_operator.handlers.runtime import credentials_scope

    named = credentials_scope(parse(["--namespace", "team-a"], {}))
    assert named.permits("team-a", None) and not named.permits("team-b", None)
    everywhere = credentials_scope(parse(["--all-namespaces"], {}))
    assert not everywhere.permits("team-a", None)
    given = credentials_scope(
        parse(["-A"], {"AKUA_DEFAULT_CREDENTIALS_NAMESPACES": "team-b, team-c"})
    )
    assert given.permits("team-c", None) and not given.permits("team-a", None)
    none = credentials_scope(parse(["-n", "team-a", "--default-credentials-namespaces", ""], {}))
    assert not none.permits("team-a", None)
    star = credentials_scope(parse(["-n", "x", "--default-credentials-namespaces", "*"], {}))
    assert star.permits("x", None)


def test_default_credentials_selector_only_in_the_cluster_scope() -> None:
    with pytest.raises(ValueError, match="needs --all-namespaces"):
        parse(["-n", "a", "--default-credentials-namespace-selector", "tier=shared"], {})
    with pytest.raises(ValueError, match="equality-based"):
        parse(["-A", "--default-credentials-namespace-selector", "tier in (a)"], {})
    s = parse(["-A", "--default-credentials-namespace-selector", "tier=shared"], {})
    assert s.default_credentials_namespace_selector == "tier=shared"
