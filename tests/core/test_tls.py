"""The CAs the chat APIs trust: certifi's, or under SSL_CERT_FILE / SSL_CERT_DIR what
OpenSSL's defaults do, as Slack's and Discord's clients (aiohttp's default) trust them."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest
import pytest_asyncio

from bridge.errors import ConfigError
from bridge.transport import BadAddress, check_tls_env, http_client, tls_context


@dataclass
class PrivateCA:
    ca: Path  # the CA's certificate, alone
    bundle: Path  # certifi's public roots and the CA
    directory: Path  # the CA by its hash, as `openssl rehash` names it
    server: ssl.SSLContext  # a server's context, its certificate (127.0.0.1) signed by the CA


def _openssl(*args: str, cwd: Path) -> str:
    done = subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    """A private CA, as a company's: nothing trusts it unless told to."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI"):  # CI runs every test: a missing tool is its failure
            pytest.fail("needs the openssl command to make a certificate; install it in CI")
        pytest.skip("needs the openssl command to make a certificate")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *ec,
        "-subj",
        "/CN=Test Private CA",
        "-days",
        "1",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=tmp_path,
    )
    _openssl(
        "req",
        *ec,
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=tmp_path,
    )
    (tmp_path / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
        cwd=tmp_path,
    )
    ca = tmp_path / "ca.pem"
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + ca.read_text())
    directory = tmp_path / "certs"
    directory.mkdir()
    named = _openssl("x509", "-hash", "-noout", "-in", "ca.pem", cwd=tmp_path).strip()
    shutil.copy(ca, directory / f"{named}.0")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    return PrivateCA(ca, bundle, directory, server)


@pytest_asyncio.fixture
async def private_api(private_ca: PrivateCA) -> AsyncIterator[str]:
    """An https:// API on loopback whose certificate the private CA signed."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # a client that refused the certificate
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=private_ca.server)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def no_tls_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def reached(url: str) -> bool:
    """Whether the chat APIs' client, with its TLS context, trusts `url`'s certificate."""
    async with http_client(ssl_context=await tls_context()) as client:
        try:
            return (await client.get(f"{url}/v1/health")).text == "ok"
        except BadAddress as exc:
            assert "unable to get local issuer certificate" in str(exc), exc
            return False


async def handshakes(url: str, context: ssl.SSLContext) -> bool:
    """Whether a TLS handshake with `url`'s server, with `context`, succeeds."""
    host, port = url.removeprefix("https://").split(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    except ssl.SSLCertVerificationError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@pytest.mark.parametrize(
    ("cert_file", "cert_dir", "trusted"),
    [
        # The public roots in SSL_CERT_FILE, the private CA in SSL_CERT_DIR: the
        # directory was passed by, where Slack's and Discord's clients read it.
        ("public", "private", True),
        ("bundle", None, True),
        (None, "private", True),
        ("public", None, False),
        (None, None, False),  # certifi's roots alone
    ],
)
async def test_the_chat_apis_trust_what_ssl_cert_file_and_ssl_cert_dir_name(
    no_tls_variables: pytest.MonkeyPatch,
    private_ca: PrivateCA,
    private_api: str,
    cert_file: str | None,
    cert_dir: str | None,
    trusted: bool,
) -> None:
    files = {"public": certifi.where(), "bundle": str(private_ca.bundle)}
    if cert_file is not None:
        no_tls_variables.setenv("SSL_CERT_FILE", files[cert_file])
    if cert_dir is not None:
        no_tls_variables.setenv("SSL_CERT_DIR", str(private_ca.directory))
    assert await reached(private_api) is trusted
    # Slack's and Discord's clients (aiohttp's default context) trust the same.
    assert await handshakes(private_api, ssl.create_default_context()) is trusted


async def test_without_either_variable_the_chat_apis_trust_certifis_roots(
    no_tls_variables: pytest.MonkeyPatch,
) -> None:
    context = await tls_context()
    certifis = ssl.create_default_context(cafile=certifi.where())
    assert context.get_ca_certs(binary_form=True) == certifis.get_ca_certs(binary_form=True)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_ssl_cert_file_that_names_no_file_stops_the_start(tmp_path: Path) -> None:
    # OpenSSL passes it by without a word: the private CA in it went untrusted, and
    # every handshake failed with "unable to get local issuer certificate".
    missing = str(tmp_path / "corp-ca.pem")
    with pytest.raises(ConfigError) as caught:
        check_tls_env({"SSL_CERT_FILE": missing})
    assert str(caught.value) == (
        "SSL_CERT_FILE: names no file (give the path of a PEM bundle of the CAs to trust: "
        "the public roots and your private CA)"
    )
    assert missing not in str(caught.value)
    check_tls_env({"SSL_CERT_FILE": certifi.where(), "SSL_CERT_DIR": str(tmp_path)})
    check_tls_env({})


def test_an_ssl_cert_file_that_is_no_pem_bundle_stops_the_start(
    private_ca: PrivateCA, tmp_path: Path
) -> None:
    # A CA exported as DER: OpenSSL's defaults pass it by as silently as a missing file.
    der = tmp_path / "corp-ca.der"
    _openssl("x509", "-in", str(private_ca.ca), "-outform", "der", "-out", str(der), cwd=tmp_path)
    with pytest.raises(ConfigError, match="holds no certificate this user can read as PEM"):
        check_tls_env({"SSL_CERT_FILE": str(der)})
    check_tls_env({"SSL_CERT_FILE": str(private_ca.bundle)})
