#!/usr/bin/python3
"""Keys (dl-security(7)): TLS 1.3 below the protocol. The right key works; a wrong key, no key,
a stranger, an untrusted, expired or wrongly pinned certificate are refused with the documented
messages and exit 10, and nothing of theirs reaches the output; insecure setups are refused
before any connection; cuts and bit flips inside the TLS stream only cost reconnects (resumed
TLS sessions), and the transfer arrives byte-exact. Keys and certificates are made at test time
with the openssl command."""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import MiB  # noqa: E402
from fault_relay import FaultRelay  # noqa: E402

EXIT_AUTH = 10


def _sh(cmd, cwd):
    subprocess.run(cmd, shell=True, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


class Pki:
    """A CA; server, client and expired certificates it signed; a self-signed stranger; two
    pre-shared keys. Private keys mode 0600."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dltls-", dir=dltest.tmp_base())
        ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
        _sh("umask 077 && openssl req -x509 %s -keyout ca.key -out ca.pem -subj /CN=test-ca -days 3" % ec,
            self.dir)
        for name, days in (("server", "2"), ("client", "2"), ("expired", "-1")):
            _sh("umask 077 && openssl req %s -keyout %s.key -out %s.csr -subj /CN=%s && "
                "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > %s.ext && "
                "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days %s "
                "-extfile %s.ext -out %s.pem" % ((ec,) + (name,) * 5 + (days,) + (name,) * 2), self.dir)
        _sh("umask 077 && openssl req -x509 %s -keyout stranger.key -out stranger.pem -subj /CN=stranger -days 2"
            % ec, self.dir)
        _sh("chmod 644 *.pem", self.dir)
        for name in ("a", "b"):
            path = self.path(name + ".psk")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write("datalink %s\n" % os.urandom(32).hex())

    def path(self, name):
        return os.path.join(self.dir, name)

    def pin(self, name):
        """sha256:BASE64 of a certificate's public key, by the recipe in dl-security(7)."""
        out = subprocess.run(
            "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der | "
            "openssl dgst -sha256 -binary | base64" % self.path(name + ".pem"),
            shell=True, check=True, capture_output=True, text=True, timeout=30).stdout.strip()
        return "sha256:" + out

    def certs(self, name, ca=True, pin=None):
        args = ["--cert", self.path(name + ".pem"), "--key", self.path(name + ".key")]
        if ca:
            args += ["--ca", self.path("ca.pem")]
        if pin:
            args += ["--pin", pin]
        return args

    def psk(self, name="a"):
        return ["--psk", self.path(name + ".psk")]

    def close(self):
        shutil.rmtree(self.dir, True)


PKI = None


def setUpModule():
    global PKI
    PKI = Pki()


def tearDownModule():
    PKI.close()


class TlsTest(dltest.DlTestCase):
    def _listener(self, *keys, extra=()):
        out = self.path("out")
        recv, port = self.listen("dlrecv", *keys, *extra, stdout=out)
        return recv, port, out

    def _send(self, port, *keys, size=4 * MiB, extra=()):
        src = self.path("in-%d" % len(self.P.procs))
        dltest.make_random_file(src, size)
        return self.dlsend("127.0.0.1:%d" % port, "-f", src, *keys, *extra), src

    def _refused(self, keys_listen, keys_send, send_needles, recv_needles, send_code=EXIT_AUTH):
        """The dialer is refused; the listener logs why, stays up, writes nothing, and then
        serves the right peer byte-exact."""
        recv, port, out = self._listener(*keys_listen)
        bad, _ = self._send(port, *keys_send, size=1 * MiB)
        self.assertExited(bad, 30, send_code)
        self.assertOneLineError(bad, "dlsend", *send_needles)
        if recv_needles:
            dltest.wait_until(lambda: all(n in recv.stderr() for n in recv_needles) or not recv.running,
                              dltest.t(10), "the listener's refusal line")
            for n in recv_needles:
                self.assertIn(n, recv.stderr(), self.P.describe())
            self.assertIn("rejected connection", recv.stderr())
        self.assertTrue(recv.running, "the listener gave up after a refused stranger\n" + self.P.describe())
        self.assertEqual(os.path.getsize(out), 0, "a refused peer's bytes reached the output")
        good, src = self._send(port, *keys_listen_to_dialer(keys_listen))
        self.assertExitCodes(60, (good, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertNoCrash(recv)

    # -- the right keys
    def test_psk_works(self):
        recv, port, out = self._listener(*PKI.psk(), extra=("-v",))
        send, src = self._send(port, *PKI.psk(), extra=("-v",))
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertIn("TLS psk 'datalink'", send.stderr())

    def test_gen_psk_creates_the_key_once(self):
        key = self.path("new.psk")
        recv, port, out = self._listener("--gen-psk", key)
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        with open(key) as f:
            first = f.read()
        send, src = self._send(port, "--gen-psk", key)  # exists now: used as it is
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        with open(key) as f:
            self.assertEqual(f.read(), first)

    def test_certificates_with_a_ca_work(self):
        recv, port, out = self._listener(*PKI.certs("server"), extra=("-v",))
        send, src = self._send(port, *PKI.certs("client"))
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertIn("CN=client", recv.stderr())

    def test_pinned_keys_work(self):
        # Two machines that know each other: self-signed certificates, each pins the other.
        recv, port, out = self._listener(*PKI.certs("stranger", ca=False, pin=PKI.pin("client")))
        send, src = self._send(port, *PKI.certs("client", ca=False, pin=PKI.pin("stranger")))
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_classic_over_tls(self):
        recv, port, out = self._listener("--proto", "classic", "--close-ends", *PKI.psk())
        send, src = self._send(port, "--proto", "classic", *PKI.psk())
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)

    def test_bridge_with_keys_on_both_sides(self):
        # dlsend -> dlbridge -> dlrecv, TLS on both hops: everyone ends 0, byte-exact (the
        # bridge waits for the slower hop to complete after the faster one closed).
        for _ in range(3):
            out = self.path("out")
            recv, port = self.listen("dlrecv", *PKI.psk(), "--reconnect", "5s", stdout=out)
            pf = self.path("bridge-port")
            if os.path.exists(pf):
                os.unlink(pf)
            bridge = self.P.start([dltest.tool_path("dlbridge"), *PKI.psk(), "--port-file-a", pf,
                                   "listen:0", "127.0.0.1:%d" % port], name="dlbridge")
            bport = dltest.wait_port_file(pf, bridge)
            send, src = self._send(bport, *PKI.psk(), size=1 * MiB)
            self.assertExitCodes(60, (send, 0), (bridge, 0), (recv, 0))
            self.assertSameFile(src, out)

    def test_bridge_carries_a_plain_classic_peer_over_tls(self):
        # dlsend (classic, no keys) -> dlbridge side a (plain) | side b (TLS) -> dlrecv (keys)
        out = self.path("out")
        recv, port = self.listen("dlrecv", *PKI.psk(), "--lines", "-c", "1000", stdout=out)
        pf = self.path("bridge-port")
        bridge = self.P.start([dltest.tool_path("dlbridge"), "--proto-a", "classic", "--tls-side", "b",
                               *PKI.psk(), "--port-file-a", pf, "listen:0", "127.0.0.1:%d" % port],
                              name="dlbridge")
        bport = dltest.wait_port_file(pf, bridge)
        lines = b"".join(b"line %d\n" % i for i in range(1000))
        send = self.dlsend("--proto", "classic", "--lines", "127.0.0.1:%d" % bport, stdin=subprocess.PIPE)
        self.feed(send.popen.stdin, [lines], close=False)
        self.assertExited(recv, 60, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), lines)
        self.assertNoCrash(bridge)  # it ends too: its receiver stopped on purpose (-c)

    # -- refusals
    def test_wrong_psk_is_refused(self):
        self._refused(PKI.psk("a"), PKI.psk("b"), ["handshake failed: wrong pre-shared key"],
                      ["wrong pre-shared key"])

    def test_no_key_is_refused(self):
        self._refused(PKI.psk("a"), [], ["the listener speaks TLS"], ["does not speak TLS"])

    def test_a_key_for_a_plain_listener_is_refused(self):
        recv, port, out = self._listener()
        bad, _ = self._send(port, *PKI.psk())
        self.assertExited(bad, 30, EXIT_AUTH)
        self.assertOneLineError(bad, "dlsend", "does not speak TLS")

    def test_untrusted_certificate_is_refused(self):
        self._refused(PKI.certs("server"), PKI.certs("stranger"),
                      ["the peer refused our certificate", "untrusted"], ["untrusted certificate"])

    def test_wrong_pin_is_refused(self):
        self._refused(PKI.certs("server", ca=False, pin=PKI.pin("client")),
                      PKI.certs("client", ca=False, pin=PKI.pin("client")),
                      ["peer certificate does not match --pin"], [])

    def test_listener_pin_refuses_another_dialer(self):
        self._refused(PKI.certs("server", ca=False, pin=PKI.pin("client")),
                      PKI.certs("stranger", ca=False, pin=PKI.pin("server")),
                      ["the peer refused our certificate"], ["peer certificate does not match --pin"])

    def test_untrusted_listener_is_refused(self):
        # The dialer trusts the CA; the listener shows a self-signed certificate.
        recv, port, out = self._listener(*PKI.certs("stranger", ca=False, pin=PKI.pin("client")))
        bad, _ = self._send(port, *PKI.certs("client"))
        self.assertExited(bad, 30, EXIT_AUTH)
        self.assertOneLineError(bad, "dlsend", "untrusted certificate")

    def test_expired_certificates_are_refused(self):
        # Our own expired certificate: refused before connecting.
        p = self.run_tool("dlsend", "127.0.0.1:9", *PKI.certs("expired"))
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlsend", "certificate expired")
        # A peer's expired certificate: a listener shown one by a TLS client refuses it...
        recv, port, out = self._listener(*PKI.certs("server"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(PKI.path("expired.pem"), PKI.path("expired.key"))
        with socket.create_connection(("127.0.0.1", port), timeout=dltest.t(10)) as raw:
            with ctx.wrap_socket(raw) as s:
                try:
                    s.sendall(b"\xd7" + b"x" * 200)
                    s.recv(100)
                except (ssl.SSLError, OSError):
                    pass
        dltest.wait_until(lambda: "certificate expired" in recv.stderr(), dltest.t(10),
                          "the listener's refusal")
        self.assertEqual(os.path.getsize(out), 0)
        # ... and a dialer shown one by a listener refuses it.
        srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.minimum_version = ssl.TLSVersion.TLSv1_3
        srv.load_cert_chain(PKI.path("expired.pem"), PKI.path("expired.key"))
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        lsock.settimeout(dltest.t(20))
        self.addCleanup(lsock.close)

        def serve():
            try:
                conn, _ = lsock.accept()
                with srv.wrap_socket(conn, server_side=True) as s:
                    s.recv(10)
            except (ssl.SSLError, OSError):
                pass
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        p = self.run_tool("dlsend", "127.0.0.1:%d" % lsock.getsockname()[1], *PKI.certs("client"))
        th.join(dltest.t(20))
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlsend", "certificate expired")

    def test_strangers_reach_nothing_and_are_logged_rate_limited(self):
        recv, port, out = self._listener(*PKI.psk())
        # Plain native HELLO-looking bytes, classic frames, garbage, and a silent connection.
        payloads = [b"\xd7" + os.urandom(100), b" " * 64 + b"classic?", os.urandom(300), b""]
        started = time.monotonic()
        for i in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=dltest.t(10)) as s:
                if payloads[i % 4]:
                    s.sendall(payloads[i % 4])
                s.shutdown(socket.SHUT_WR)
                try:
                    s.settimeout(dltest.t(5))
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
        dltest.wait_until(lambda: "more connections refused" in recv.stderr(), dltest.t(10),
                          "the line about refusals not shown")
        good, src = self._send(port, *PKI.psk())
        self.assertExitCodes(60, (good, 0), (recv, 0))
        self.assertSameFile(src, out)  # nothing of the strangers' in the output
        lines = [l for l in recv.stderr().splitlines() if "rejected connection" in l]
        # A burst of 10 lines per kind of reason (at most 3 kinds here), then one a second each.
        budget = 30 + 3 * int(time.monotonic() - started + 1)
        self.assertLessEqual(len(lines), min(budget, 39), "refusals are not rate-limited:\n" + recv.stderr())
        self.assertIn("rejected connection", recv.stderr())

    # -- setups refused before any connection
    def test_insecure_setups_are_refused(self):
        open_key = self.path("open.psk")
        shutil.copy(PKI.path("a.psk"), open_key)
        os.chmod(open_key, 0o644)
        cases = [
            (["127.0.0.1:9", "--psk", open_key], EXIT_AUTH, "too open"),
            (["127.0.0.1:9", "--psk", self.path("missing.psk")], EXIT_AUTH, "No such file"),
            (["127.0.0.1:9", "--cert", PKI.path("client.pem"), "--key", PKI.path("client.key")],
             dltest.EXIT_USAGE, "needs --ca or --pin"),
            (["-l", "0", "--cert", PKI.path("server.pem"), "--key", PKI.path("server.key")],
             dltest.EXIT_USAGE, "anyone could connect"),
            (["127.0.0.1:9", "--psk", PKI.path("a.psk"), "--ca", PKI.path("ca.pem")],
             dltest.EXIT_USAGE, "cannot be combined"),
            (["127.0.0.1:9", "--cert", PKI.path("client.pem"), "--ca", PKI.path("ca.pem")],
             dltest.EXIT_USAGE, "--cert and --key go together"),
            (["127.0.0.1:9", "--pin", "nonsense", "--cert", PKI.path("client.pem"), "--key",
              PKI.path("client.key")], dltest.EXIT_USAGE, "--pin"),
        ]
        os.chmod(PKI.path("client.key"), 0o640)
        try:
            p = self.run_tool("dlsend", "127.0.0.1:9", *PKI.certs("client"))
            self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
            self.assertOneLineError(p, "dlsend", "too open")
        finally:
            os.chmod(PKI.path("client.key"), 0o600)
        for args, code, needle in cases:
            with self.subTest(args=args):
                p = self.run_tool("dlsend", *args)
                self.assertEqual(p.returncode, code, p.describe())
                self.assertOneLineError(p, "dlsend", needle)

    # -- faults inside the TLS stream
    def _through_relay(self, keys, size, faults, direction="up", send_extra=(), arm_first_early=False):
        src = self.path("in")
        dltest.make_random_file(src, size)
        out = self.path("out")
        recv, port = self.listen("dlrecv", *keys, "-v", stdout=out)
        relay = FaultRelay(("127.0.0.1", port))
        self.addCleanup(relay.close)
        if arm_first_early:  # inside the very first handshake: armed before the dialer starts
            (relay.cut_after if faults[0][0] == "cut" else relay.corrupt_after)(faults[0][1], direction)
        send = self.dlsend("127.0.0.1:%d" % relay.port, "-f", src, *keys, "-v", *send_extra)
        procs = (send, recv)

        def wait(pred, what):
            relay.wait_for(lambda r: pred(r) or any(not p.running for p in procs), dltest.t(60), what)
            if not pred(relay):
                self.fail("a tool exited while waiting for %s\n%s" % (what, self.P.describe()))
        prev = 0
        for i, (kind, point) in enumerate(faults):
            wait(lambda r, n=i + 1: r.connections >= n, "connection #%d" % (i + 1))
            done = sum(1 for k, _ in faults[:i + 1] if k == kind)
            early = arm_first_early and i == 0
            if kind == "cut":
                if not early:
                    relay.cut_after(point - prev, direction)
                wait(lambda r, n=done: r.cuts >= n, "cut #%d" % done)
            else:
                if not early:
                    relay.corrupt_after(point - prev, direction)
                wait(lambda r, n=done: r.corruptions >= n, "flip #%d" % done)
            wait(lambda r, n=i + 2: r.connections >= n, "reconnect #%d" % (i + 1))
            prev = point
        self.assertExitCodes(180, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        self.assertNoCrash(send)
        self.assertNoCrash(recv)
        return send, recv, relay

    def test_five_cuts_during_an_encrypted_64_mib_transfer(self):
        points = [(k, n * 10 * MiB) for k, n in zip(["cut"] * 5, range(1, 6))]
        send, recv, relay = self._through_relay(PKI.psk(), 64 * MiB, points)
        self.assertEqual(relay.cuts, 5)
        # Each reconnect resumed the TLS session (a ticket, no full handshake) and the native
        # session (exactly once, byte-exact above).
        self.assertGreaterEqual(send.stderr().count("TLS resumed"), 5, send.stderr())
        self.assertGreaterEqual(send.stderr().count("session resumed"), 5, send.stderr())

    def test_cuts_with_certificates(self):
        send, recv, relay = self._through_relay(PKI.certs("client"), 16 * MiB,
                                                [("cut", 4 * MiB), ("cut", 9 * MiB)])
        self.assertGreaterEqual(send.stderr().count("TLS resumed"), 2, send.stderr())

    def test_bit_flips_in_the_tls_stream_only_cause_reconnects(self):
        faults = [("flip", 3 * MiB), ("flip", 9 * MiB), ("cut", 14 * MiB), ("flip", 20 * MiB)]
        send, recv, relay = self._through_relay(PKI.psk(), 32 * MiB, faults)
        self.assertEqual(relay.corruptions, 3)
        err = (send.stderr() + recv.stderr()).lower()
        self.assertIn("integrity", err, self.P.describe())

    def test_bit_flips_towards_the_dialer(self):
        # Flips in what the listener sends, the first inside its first handshake (the dialer
        # may retry its first connection: -w), the second in a HELLO answer or an ack.
        faults = [("flip", 400), ("flip", 700)]
        send, recv, relay = self._through_relay(PKI.certs("client"), 32 * MiB, faults, direction="down",
                                                send_extra=("-w", "20s", "--chunk", "16K"),
                                                arm_first_early=True)
        self.assertEqual(relay.corruptions, 2)


def keys_listen_to_dialer(keys):
    """The dialer's keys that match a listener's, for the follow-up transfer of _refused."""
    if "--psk" in keys:
        return keys
    if "--ca" in keys:
        return PKI.certs("client")
    pin = keys[keys.index("--pin") + 1] if "--pin" in keys else None
    # A pinning listener pins the client: the dialer pins whatever the listener shows.
    listener_cert = os.path.basename(keys[keys.index("--cert") + 1])[:-4]
    return PKI.certs("client", ca=False, pin=PKI.pin(listener_cert)) if pin else keys


if __name__ == "__main__":
    dltest.main()
