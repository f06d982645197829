#!/usr/bin/python3
"""Keys (dl-security(7)) against a careless user and a hostile network: key material that is
not what it seems (an encrypted private key, a flag given an empty value by an unset shell
variable), strangers that flood a listener with stalled handshakes, bytes injected inside the
TLS stream. Every failure is one line with the documented exit code, nothing of an
unauthenticated peer reaches the output, and a real peer still gets through. Keys and
certificates are made at test time (test_tls.Pki)."""

import os
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB  # noqa: E402
import test_tls  # noqa: E402
from test_tls import EXIT_AUTH  # noqa: E402

setUpModule = test_tls.setUpModule
tearDownModule = test_tls.tearDownModule


def pki():
    return test_tls.PKI


class KeyMaterialTest(dltest.DlTestCase):
    need_binaries = False

    def start(self, tool, *args, **kw):
        return self.P.start([dltest.tool_path(tool)] + [str(a) for a in args], **kw)

    def test_an_encrypted_private_key_is_refused_without_asking_for_a_passphrase(self):
        # OpenSSL's default is to ask for the passphrase on the terminal, or to read it from
        # stdin when there is none: the tool's data. It must neither block on a prompt nor eat
        # the first line of what it was asked to send.
        key = self.path("enc.key")
        subprocess.run(["openssl", "pkey", "-in", pki().path("client.key"), "-aes256", "-passout",
                        "pass:secret", "-out", key], check=True, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(key, 0o600)
        data = self.path("data")
        with open(data, "wb") as f:
            f.write(b"secret\nthe data itself\n")
        with open(data, "rb") as stdin:
            p = self.start("dlsend", "--cert", pki().path("client.pem"), "--key", key, "--ca",
                           pki().path("ca.pem"), "127.0.0.1:9", stdin=stdin)
            self.assertExited(p, 20, EXIT_AUTH)
        self.assertOneLineError(p, "dlsend", "--key", "passphrase")
        self.assertNotIn("Enter PEM pass phrase", p.stderr())
        self.assertEqual(len([l for l in p.stderr().splitlines() if l.strip()]), 1, p.describe())

    def test_a_key_flag_with_an_empty_value_is_a_usage_error(self):
        # `--psk "$PSK"` with PSK unset: the tool must not quietly run without keys, nor drop
        # the --pin from a listener that also has --ca (any certificate of the CA would do).
        certs = ["--cert", pki().path("server.pem"), "--key", pki().path("server.key"),
                 "--ca", pki().path("ca.pem")]
        cases = [
            ("dlrecv", ["-l", "127.0.0.1:0", "--psk", ""]),
            ("dlrecv", ["-l", "127.0.0.1:0", "--gen-psk", ""]),
            ("dlrecv", ["-l", "127.0.0.1:0", *certs, "--pin", ""]),
            ("dlrecv", ["-l", "127.0.0.1:0", "--cert", pki().path("server.pem"), "--key",
                        pki().path("server.key"), "--pin", pki().pin("client"), "--ca", ""]),
            ("dlsend", ["127.0.0.1:9", "--psk", ""]),
            ("dlsend", ["127.0.0.1:9", "--cert", "", "--key", "", "--ca", pki().path("ca.pem")]),
            ("dlping", ["-l", "127.0.0.1:0", "--psk", ""]),
            ("pymodaq-emu", ["server", "-l", "127.0.0.1:0", "--psk", ""]),
        ]
        for tool, args in cases:
            with self.subTest(tool=tool, args=args):
                p = self.start(tool, *args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                rc = p.wait(dltest.t(10))
                if rc is None:
                    p.kill()
                    p.wait(5)
                    self.fail("%s %s: still running with an empty key flag (keys silently off?)\n%s"
                              % (tool, args, p.describe()))
                self.assertEqual(rc, dltest.EXIT_USAGE, p.describe())
                self.assertOneLineError(p, tool, "empty")


if __name__ == "__main__":
    dltest.main()
