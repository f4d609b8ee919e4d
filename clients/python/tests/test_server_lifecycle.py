"""Starting, configuration checks, TLS and graceful shutdown of the real binary."""

import datetime
import pathlib
import signal
import subprocess
import tempfile

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest
import requests
from adbc_driver_flightsql import DatabaseOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import ADMIN, BIN, ROOT, Server, token_config


def test_readme_start_command_resolves_from_the_repo_root():
    # The README's start command names a profile of Cargo.toml (building it here would take
    # ~10 minutes); the same resolution in the debug profile (already built by the test
    # script) must pick the `telemark` binary.
    import re
    import tomllib
    readme = (ROOT / "README.md").read_text()
    start = re.search(r"## Two commands.*?```sh\n(.*?)\n```", readme, re.S).group(1)
    assert start == "cargo run --profile quick -- serve", start
    profiles = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]
    assert "quick" in profiles and profiles["quick"].get("debug") is False, profiles.get("quick")
    r = subprocess.run(["cargo", "run", "--quiet", "--", "serve", "--print-config"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert 'http_addr = "127.0.0.1:8181"' in r.stdout


def test_public_bind_without_tokens_is_refused():
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([BIN, "serve", "--data-dir", tmp, "--http-addr", "0.0.0.0:0", "--flight-addr", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert "--allow-unauthenticated" in r.stderr


def test_print_config_shows_every_option():
    r = subprocess.run([BIN, "serve", "--print-config", "--http-addr", "127.0.0.1:9999"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for key in ["data_dir", "http_addr = \"127.0.0.1:9999\"", "flight_addr", "[storage]", "durability = \"sync\"", "max_buffer_bytes"]:
        assert key in r.stdout, key


def test_unknown_config_key_is_named():
    with tempfile.TemporaryDirectory() as tmp:
        cfg = pathlib.Path(tmp) / "c.toml"
        cfg.write_text("htp_addr = \"127.0.0.1:1\"\n")
        r = subprocess.run([BIN, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "htp_addr" in r.stderr


def test_sigterm_flushes_and_exits_cleanly_and_data_survives():
    with tempfile.TemporaryDirectory() as tmp:
        data = pathlib.Path(tmp) / "data"
        s = Server(data, "")
        with flightsql.connect(uri=s.flight) as conn, conn.cursor() as cur:
            t = pa.table({"time": pa.array([1, 2, 3], pa.timestamp("ns")), "dev": ["a", "a", "b"], "v": [1.0, 2.0, 3.0]})
            cur.adbc_ingest("m", t, mode="create", db_schema_name="db")
        code, out, err = s.stop(signal.SIGTERM)
        assert code == 0, err
        assert "stopped cleanly" in out
        assert list((data / "segments").glob("*.tms")), "the write buffer was flushed to segments at shutdown"
        r = subprocess.run([BIN, "query", "--data-dir", str(data), "--db", "db", "--format", "csv", "SELECT dev, v FROM m ORDER BY time"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines() == ["dev,v", "a,1.0", "a,2.0", "b,3.0"]


def make_ca_and_server_cert(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Telemark test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(key, hashes.SHA256()))
    skey = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(skey.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    d = pathlib.Path(directory)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(skey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_tls_with_adbc_and_https():
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = make_ca_and_server_cert(tmp)
        s = Server(pathlib.Path(tmp) / "data", token_config() + f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n')
        try:
            assert s.flight.startswith("grpc+tls://") and s.http.startswith("https://")
            kwargs = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {ADMIN}",
                      DatabaseOptions.TLS_ROOT_CERTS.value: ca.read_text()}
            with flightsql.connect(uri=s.flight, db_kwargs=kwargs) as conn, conn.cursor() as cur:
                cur.execute("SELECT 40 + 2")
                assert cur.fetchone() == (42,)
            # Without the CA the handshake fails: the server really speaks TLS with that certificate.
            with pytest.raises(Exception):
                with flightsql.connect(uri=s.flight, db_kwargs={DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {ADMIN}"}) as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
            r = requests.get(f"{s.http}/health", verify=str(ca), timeout=10)
            assert r.json() == {"status": "pass"}
            r = subprocess.run([BIN, "query", "--host", s.flight.replace("grpc+tls://", "https://"), "--token", ADMIN,
                                "--ca-cert", str(ca), "--format", "json", "SELECT 7 AS x"], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert '"x":7' in r.stdout
        finally:
            s.stop()
