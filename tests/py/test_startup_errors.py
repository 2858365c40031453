"""`openmi server` refuses bad configuration with a clear, short error instead of starting or hanging."""

from __future__ import annotations

import socket
import subprocess

import support


def _run_server(args, timeout=30):
    try:
        return subprocess.run(
            [support.OPENMI_BIN, "server", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"`openmi server {' '.join(args)}` still running after {timeout} s: {err.stderr!r}")


def _no_panic(res):
    text = res.stdout + res.stderr
    assert "panicked" not in text and "RUST_BACKTRACE" not in text, text


def test_bad_listen_address(tmp_path):
    res = _run_server(["--data-dir", str(tmp_path / "d"), "--listen", "not-an-addr"])
    assert res.returncode != 0, res
    _no_panic(res)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines, res
    # One error line (clap may add its "For more information, try '--help'." hint).
    assert len([line for line in lines if "--help" not in line]) == 1, res.stderr
    assert "not-an-addr" in res.stderr or "listen" in res.stderr, res.stderr


def test_port_in_use(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = _run_server(["--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}"])
    assert res.returncode != 0, res
    _no_panic(res)
    message = (res.stderr + res.stdout).lower()
    assert "in use" in message or "address" in message, res.stderr


def test_unreachable_database(tmp_path):
    res = _run_server(
        [
            "--data-dir", str(tmp_path / "d"),
            "--listen", f"127.0.0.1:{support.free_port()}",
            "--database-url", "postgres://postgres@127.0.0.1:1/test",
        ],
        timeout=30,
    )
    assert res.returncode != 0, res
    _no_panic(res)
    assert res.stderr.strip(), res


def test_bad_key_encryption_key_file(tmp_path):
    kek = tmp_path / "kek"
    kek.write_text("not hex\n")
    res = _run_server(
        [
            "--data-dir", str(tmp_path / "d"),
            "--listen", f"127.0.0.1:{support.free_port()}",
            "--key-encryption-key-file", str(kek),
        ]
    )
    assert res.returncode != 0, res
    _no_panic(res)
    assert "key-encryption key" in res.stderr.lower(), res.stderr
