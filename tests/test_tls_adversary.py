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
from fault_relay import FaultRelay  # noqa: E402
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

    def test_a_certificate_with_a_weak_key_is_refused_as_weak_not_as_malformed(self):
        d = self.path("weak")
        os.mkdir(d)
        test_tls._sh("umask 077 && openssl req -x509 -newkey rsa:512 -nodes -keyout weak.key -out weak.pem "
                     "-subj /CN=weak -days 2 && chmod 644 weak.pem", d)
        p = self.start("dlsend", "--cert", os.path.join(d, "weak.pem"), "--key", os.path.join(d, "weak.key"),
                       "--pin", pki().pin("server"), "127.0.0.1:9", stdin=subprocess.DEVNULL)
        self.assertExited(p, 20, EXIT_AUTH)
        self.assertOneLineError(p, "dlsend", "--cert", "too weak")
        self.assertNotIn("not a PEM certificate", p.stderr())

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


def _fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except FileNotFoundError:
        return 0


class InjectingRelay(threading.Thread):
    """A TCP relay to `target` that, on its first connection only, inserts `payload` into the
    dialer-to-listener byte stream once `at` bytes have passed. Later connections are relayed
    untouched, so the link heals by reconnecting."""

    def __init__(self, target, at, payload):
        super().__init__(daemon=True)
        self.target, self.at, self.payload = target, at, payload
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.injected = 0

    def _pump(self, a, b, inject_at):
        seen = 0
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if inject_at is not None and seen <= inject_at < seen + len(d):
                    k = inject_at - seen
                    d = d[:k] + self.payload + d[k:]
                    inject_at = None
                    self.injected += 1
                seen += len(d)
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
                u = socket.create_connection(self.target, timeout=10)
                u.settimeout(None)
            except OSError:
                return
            self.connections += 1
            first = self.connections == 1
            threading.Thread(target=self._pump, args=(c, u, self.at if first else None), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, None), daemon=True).start()

    def close(self):
        self.sock.close()


class HostileNetworkTest(dltest.DlTestCase):
    def _listener(self, *keys):
        out = self.path("out-%d" % len(self.P.procs))
        recv, port = self.listen("dlrecv", *keys, "-v", stdout=out)
        return recv, port, out

    def test_a_flood_of_stalled_handshakes_neither_locks_the_peer_out_nor_grows_the_listener(self):
        recv, port, out = self._listener("--psk", pki().path("a.psk"))
        base = _fd_count(recv.pid)
        src_addr = dltest.private_loopback()
        stalled = []
        self.addCleanup(lambda: [s.close() for s in stalled])
        for _ in range(300):
            s = socket.socket()
            s.bind((src_addr, 0))
            s.connect(("127.0.0.1", port))
            # A ClientHello record header announcing 512 bytes, then only part of it.
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc" + os.urandom(64))
            stalled.append(s)
        dltest.wait_until(lambda: "more connections refused" in recv.stderr(), dltest.t(10),
                          "the note about refusals not shown")
        self.assertLessEqual(_fd_count(recv.pid), base + 64 + 8,
                             "stalled handshakes hold descriptors without bound")
        src = self.path("in")
        dltest.make_random_file(src, 2 * MiB)
        send = self.dlsend("127.0.0.1:%d" % port, "-f", src, "--psk", pki().path("a.psk"))
        self.assertExitCodes(60, (send, 0), (recv, 0))
        self.assertSameFile(src, out)
        lines = [l for l in recv.stderr().splitlines() if "rejected connection" in l]
        self.assertLessEqual(len(lines), 30, "refusals are not rate-limited:\n" + recv.stderr())
        self.assertNoCrash(recv)

    def test_bytes_injected_inside_the_tls_stream_only_cause_reconnects(self):
        payloads = {
            "random bytes": os.urandom(37),
            "a forged application-data record": b"\x17\x03\x03\x00\x40" + os.urandom(64),
            "a plaintext alert": b"\x15\x03\x03\x00\x02\x02\x30",
            "an oversized record header": b"\x17\x03\x03\xff\xff",
        }
        for name, payload in payloads.items():
            with self.subTest(injected=name):
                recv, port, out = self._listener("--psk", pki().path("a.psk"))
                relay = InjectingRelay(("127.0.0.1", port), 3 * MiB, payload)
                relay.start()
                self.addCleanup(relay.close)
                src = self.path("in")
                dltest.make_random_file(src, 8 * MiB)
                send = self.dlsend("127.0.0.1:%d" % relay.port, "-f", src, "--psk", pki().path("a.psk"), "-v")
                self.assertExitCodes(120, (send, 0), (recv, 0))
                self.assertSameFile(src, out)
                self.assertEqual(relay.injected, 1)
                self.assertGreaterEqual(relay.connections, 2, "the damage went unnoticed\n" + self.P.describe())
                self.assertNoCrash(send)
                self.assertNoCrash(recv)

    def test_a_bit_flipped_in_the_first_handshake_is_retried_within_wait(self):
        # Before the listener ever accepted it, a dialer cannot tell a damaged handshake from
        # a wrong key. With -w it tries twice more: the damage heals, a wrong key still fails
        # within a second. Without -w the first refusal is the answer, as before.
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--psk", pki().path("a.psk"), "-k", "-v", stdout=out)
        for at in (10, 200):   # inside the ClientHello: the listener answers "wrong pre-shared key"
            with self.subTest(byte=at):
                relay = FaultRelay(("127.0.0.1", port))
                self.addCleanup(relay.close)
                relay.handshake_faults(1, corrupt_at=at, direction="up")
                src = self.path("in-%d" % at)
                dltest.make_random_file(src, 1 * MiB)
                send = self.dlsend("127.0.0.1:%d" % relay.port, "-f", src, "--psk", pki().path("a.psk"),
                                   "-w", "20", "-v", name="send-%d" % at)
                self.assertExited(send, 30, 0)
                self.assertEqual(relay.connections, 2, self.P.describe())
        self.assertEqual(os.path.getsize(out), 2 * MiB)
        before = recv.stderr().count("wrong pre-shared key")
        wrong = self.dlsend("127.0.0.1:%d" % port, "-f", "/dev/null", "--psk", pki().path("b.psk"),
                            "-w", "20", name="wrong-key")
        started = time.monotonic()
        self.assertExited(wrong, 30, EXIT_AUTH)
        self.assertLess(time.monotonic() - started, 5, "a wrong key took the whole --wait")
        self.assertOneLineError(wrong, "dlsend", "wrong pre-shared key")
        once = self.dlsend("127.0.0.1:%d" % port, "-f", "/dev/null", "--psk", pki().path("b.psk"), name="no-wait")
        self.assertExited(once, 30, EXIT_AUTH)
        refusals = lambda: recv.stderr().count("wrong pre-shared key") - before  # noqa: E731
        dltest.wait_until(lambda: refusals() >= 4, 10, "the listener's refusals")
        self.assertEqual(refusals(), 4, recv.stderr())   # three tries with -w, one without
        self.assertTrue(recv.running)
        self.assertEqual(os.path.getsize(out), 2 * MiB)   # nothing of the wrong key's

    def test_a_dialing_receiver_takes_nothing_from_an_impostor(self):
        # dlrecv dials with keys; what answers is a plain server sending native-looking bytes,
        # then a TLS server with a certificate from another CA that sends data at once.
        import ssl
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        ls.settimeout(dltest.t(20))
        self.addCleanup(ls.close)
        port = ls.getsockname()[1]
        other = self.path("other")
        os.mkdir(other)
        test_tls._sh("umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                     "-keyout o.key -out o.pem -subj /CN=impostor -days 2 "
                     "-addext subjectAltName=IP:127.0.0.1", other)

        def plain():
            c, _ = ls.accept()
            with c:
                c.recv(1000)
                c.sendall(b"\xd7" + b"EVIL" * 500)
                c.recv(1000)

        def impostor():
            c, _ = ls.accept()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(os.path.join(other, "o.pem"), os.path.join(other, "o.key"))
            try:
                with ctx.wrap_socket(c, server_side=True) as s:
                    s.sendall(b"EVIL" * 500)
                    s.recv(1000)
            except (ssl.SSLError, OSError):
                pass

        for serve, keys, needle in (
                (plain, ["--psk", pki().path("a.psk")], "does not speak TLS"),
                (impostor, pki().certs("client"), "untrusted certificate")):
            with self.subTest(server=serve.__name__):
                th = threading.Thread(target=serve, daemon=True)
                th.start()
                out = self.path("out-%s" % serve.__name__)
                p = self.P.start([self.DLRECV, *keys, "127.0.0.1:%d" % port], stdout=out)
                self.assertExited(p, 30, EXIT_AUTH)
                self.assertOneLineError(p, "dlrecv", needle)
                self.assertEqual(os.path.getsize(out), 0, "an impostor's bytes reached the output")
                th.join(dltest.t(10))

    def test_signals_end_a_stalled_handshake_at_once(self):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        ls.settimeout(dltest.t(20))
        self.addCleanup(ls.close)
        port = ls.getsockname()[1]
        import signal
        for keys in (["--psk", pki().path("a.psk")], pki().certs("client")):
            with self.subTest(keys=keys[0]):
                p = self.dlsend(*keys, "-w", "30", "127.0.0.1:%d" % port, stdin=subprocess.PIPE)
                c, _ = ls.accept()
                self.addCleanup(c.close)
                c.settimeout(dltest.t(10))
                self.assertTrue(c.recv(100), "no ClientHello")  # it is mid-handshake now
                p.signal(signal.SIGTERM)
                self.assertExited(p, 5, dltest.EXIT_INTERRUPTED)
                self.assertNoCrash(p)
        # A listener holding stalled strangers.
        recv, lport, out = self._listener("--psk", pki().path("a.psk"))
        held = [socket.create_connection(("127.0.0.1", lport)) for _ in range(10)]
        self.addCleanup(lambda: [s.close() for s in held])
        for s in held:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")
        dltest.wait_until(lambda: _fd_count(recv.pid) >= 10, dltest.t(10), "the strangers accepted")
        recv.signal(signal.SIGTERM)
        self.assertExited(recv, 5, dltest.EXIT_INTERRUPTED)
        self.assertEqual(os.path.getsize(out), 0)


class DlpingRefusedTest(dltest.DlTestCase):
    need_binaries = False

    def test_a_refused_certificate_is_one_error_not_a_connection_with_statistics(self):
        # TLS 1.3 lets a dialer finish its handshake before the responder has checked the
        # dialer's certificate: dlping must wait for the verdict before saying "connected".
        pf = self.path("port")
        resp = self.P.start([dltest.tool_path("dlping"), "-l", "127.0.0.1:0", "--port-file", pf,
                             *pki().certs("server")], name="responder")
        port = dltest.wait_port_file(pf, resp)
        # A self-signed certificate (not signed by the responder's CA); the dialer itself trusts
        # the CA, or pins the responder.
        for name, keys in (("ca", pki().certs("stranger")),
                           ("pin", pki().certs("stranger", ca=False, pin=pki().pin("server")))):
            with self.subTest(dialer_verifies_by=name):
                out = self.path("out-%s" % name)
                p = self.P.start([dltest.tool_path("dlping"), "-c", "2", "-i", "10ms", *keys,
                                  "127.0.0.1:%d" % port], stdout=out)
                self.assertExited(p, 30, EXIT_AUTH)
                self.assertOneLineError(p, "dlping", "the peer refused our certificate")
                with open(out) as f:
                    shown = f.read()
                self.assertEqual(shown, "", "a refused dlping reported a connection:\n" + shown)
        self.assertTrue(resp.running)
        # The right certificate still works, its set-up time now including the verdict.
        out = self.path("out-good")
        p = self.P.start([dltest.tool_path("dlping"), "-c", "2", "-i", "10ms", *pki().certs("client"),
                          "127.0.0.1:%d" % port], stdout=out)
        self.assertExited(p, 30, 0)
        with open(out) as f:
            self.assertIn("2 received", f.read())


class NotYetValidTest(dltest.DlTestCase):
    """Certificates whose validity starts in the future (made with `openssl ca -startdate`)."""

    def _not_yet_valid(self):
        d = self.path("ca")
        os.mkdir(d)
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nserial = serial\n"
                    "new_certs_dir = .\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n"
                    "[ext]\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n")
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("01\n")
        test_tls._sh("umask 077 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                     "-keyout later.key -out later.csr -subj /CN=later && "
                     "openssl ca -batch -config ca.cnf -cert %s -keyfile %s -in later.csr -out later.pem "
                     "-startdate 20990101000000Z -enddate 20991231000000Z -extensions ext"
                     % (pki().path("ca.pem"), pki().path("ca.key")), d)
        return ["--cert", os.path.join(d, "later.pem"), "--key", os.path.join(d, "later.key"),
                "--ca", pki().path("ca.pem")]

    def test_a_certificate_not_yet_valid_is_refused_on_either_side_naming_the_cause(self):
        later = self._not_yet_valid()
        # The dialer's: the listener says why; the dialer is told its certificate was refused,
        # and the text must not send it looking for a pin that does not exist.
        out = self.path("out")
        recv, port = self.listen("dlrecv", *pki().certs("server"), stdout=out)
        p = self.dlsend("127.0.0.1:%d" % port, *later, stdin=subprocess.DEVNULL)
        self.assertExited(p, 30, EXIT_AUTH)
        self.assertOneLineError(p, "dlsend", "the peer refused our certificate", "not valid yet")
        dltest.wait_until(lambda: "not yet valid" in recv.stderr(), dltest.t(10), "the listener's refusal")
        self.assertEqual(os.path.getsize(out), 0)
        # The listener's: the dialer names it.
        recv2, port2 = self.listen("dlrecv", *later, "--pin", pki().pin("client"), stdout=self.path("out2"))
        p = self.dlsend("127.0.0.1:%d" % port2, *pki().certs("client"), stdin=subprocess.DEVNULL)
        self.assertExited(p, 30, EXIT_AUTH)
        self.assertOneLineError(p, "dlsend", "certificate not yet valid")


class PymodaqReconnectTest(dltest.DlTestCase):
    need_binaries = False

    def test_a_grabber_accepted_once_takes_a_damaged_handshake_for_damage_and_redials(self):
        # dl-security(7): a dialer its listener accepted earlier in the run treats a later failed
        # handshake as damage on the path (a flipped bit in a ClientHello fails the pre-shared
        # key's binder, which reads like a wrong key) and retries.
        pf = self.path("port")
        out = self.path("server.out")
        srv = self.P.start([dltest.tool_path("pymodaq-emu"), "server", "-l", "127.0.0.1:0", "--port-file", pf,
                            "-w", "60", *pki().psk()], stdin=subprocess.PIPE, stdout=out, name="server")
        port = dltest.wait_port_file(pf, srv)
        relay = FaultRelay(("127.0.0.1", port))
        self.addCleanup(relay.close)
        g = self.P.start([dltest.tool_path("pymodaq-emu"), "grabber", "-w", "60", "-v", *pki().psk(),
                          "127.0.0.1:%d" % relay.port], name="grabber")

        def connected():
            with open(out) as f:
                return f.read().count('"event":"connected"')
        dltest.wait_until(lambda: connected() >= 1 or not g.running, dltest.t(20), "the first connection")
        self.assertEqual(connected(), 1, self.P.describe())
        relay.handshake_faults(1, corrupt_at=60, direction="up")  # inside the next ClientHello
        relay.cut_all()
        dltest.wait_until(lambda: connected() >= 2 or not g.running, dltest.t(30), "the grabber back")
        self.assertTrue(g.running, "the grabber gave up on a damaged handshake\n" + self.P.describe())
        self.assertEqual(connected(), 2, self.P.describe())
        self.assertGreaterEqual(relay.corruptions, 1)
        self.assertGreaterEqual(relay.connections, 3)


if __name__ == "__main__":
    dltest.main()
