"""The Akua client against the simulator served over TLS by a private CA (``--ca-file``).

The CA and the server certificate are made here with ``cryptography`` (a test dependency); the
simulator is the real HTTP server (uvicorn) on loopback, so the handshake is a real one.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from akua_testkit import TOKEN
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from akua_operator.akua import AkuaClient, AkuaTransportError, ClientConfig, Credentials
from akua_operator.akua.client import tls_context
from akua_operator.sim import SimConfig
from akua_operator.sim.server import SimServer

CREDS = Credentials(SecretStr(TOKEN))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("akua test private CA"))
        .issuer_name(_name("akua test private CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server-key.pem"}
    paths["ca"].write_bytes(_pem(ca))
    paths["cert"].write_bytes(_pem(cert))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def tls_sim(pki: dict[str, Path]) -> Iterator[SimServer]:
    server = SimServer(
        SimConfig(tokens=[TOKEN]),
        ssl_certfile=str(pki["cert"]),
        ssl_keyfile=str(pki["key"]),
    )
    with server:
        yield server


async def test_the_client_trusts_the_private_ca_given_with_ca_file(
    tls_sim: SimServer, pki: dict[str, Path]
) -> None:
    assert tls_sim.url.startswith("https://")
    async with AkuaClient(ClientConfig(base_url=tls_sim.url, ca_file=str(pki["ca"]))) as client:
        page = await client.list_clusters(creds=CREDS)
    assert page.data == []


async def test_without_ca_file_the_call_fails_with_a_tls_error_naming_the_flag(
    tls_sim: SimServer,
) -> None:
    config = ClientConfig(base_url=tls_sim.url, max_retries=0)
    async with AkuaClient(config) as client:
        with pytest.raises(AkuaTransportError) as raised:
            await client.list_clusters(creds=CREDS)
    message = str(raised.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "--ca-file / AKUA_CA_FILE" in message
    assert TOKEN not in message


async def test_a_ca_file_of_another_ca_does_not_make_the_server_trusted(
    tls_sim: SimServer, pki: dict[str, Path], tmp_path: Path
) -> None:
    """The file adds roots; it does not turn verification off (the server cert is no CA)."""
    other = tmp_path / "other.pem"
    other.write_bytes(pki["cert"].read_bytes())
    config = ClientConfig(base_url=tls_sim.url, ca_file=str(other), max_retries=0)
    async with AkuaClient(config) as client:
        with pytest.raises(AkuaTransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.list_clusters(creds=CREDS)


def test_the_default_roots_stay_trusted_with_a_ca_file(pki: dict[str, Path]) -> None:
    """System/certifi roots plus the file: more CA certificates than the file alone holds."""
    with_file = tls_context(str(pki["ca"])).cert_store_stats()["x509_ca"]
    assert with_file == tls_context().cert_store_stats()["x509_ca"] + 1
    assert tls_context().cert_store_stats()["x509_ca"] > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it: No such file or directory"),
        ("not a certificate\n", "no PEM certificate in it"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not a valid PEM CA bundle",
        ),
    ],
    ids=["missing", "not-pem", "broken-pem"],
)
def test_the_operator_refuses_to_start_with_a_bad_ca_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    binary = Path(sys.executable).parent / "akua-operator"
    for args, env in (
        (["--ca-file", str(path)], {}),
        ([], {"AKUA_CA_FILE": str(path)}),
    ):
        result = subprocess.run(
            [str(binary), "run", "--all-namespaces", *args],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "none"), **env},
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert f"akua-operator run: --ca-file {path}: {message}" in result.stderr
