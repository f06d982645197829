#!/usr/bin/python3
"""Keys (dl-security(7)) for the lean TCP tools: dlping (TCP and unix, native and fastSocket)
and pymodaq-emu (server, grabber, actuator) take the same key flags as dlsend/dlrecv and do TLS
through the library. The right key works; a wrong key, no key, a key for a plain listener and
a plain stranger are refused with the documented messages and exit 10, and the listener stays
up, logs the refusal and shows nothing of the stranger to its application; keys on udp: are a
usage error (exit 2). Keys and certificates are made at test time (test_tls.Pki)."""

import os
import socket
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
import test_tls  # noqa: E402
from test_tls import EXIT_AUTH  # noqa: E402

setUpModule = test_tls.setUpModule
tearDownModule = test_tls.tearDownModule


def pki():
    return test_tls.PKI


class Base(dltest.DlTestCase):
    need_binaries = False

    def start(self, tool, *args, **kw):
        return self.P.start([dltest.tool_path(tool)] + [str(a) for a in args], **kw)

    def run_to_end(self, tool, *args, timeout=30, **kw):
        p = self.start(tool, *args, **kw)
        self.assertExited(p, timeout)
        return p

    def stranger(self, port, payload):
        """A plain connection that sends `payload`; returns what it got back before the close."""
        got = b""
        with socket.create_connection(("127.0.0.1", port), timeout=dltest.t(10)) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            except OSError:
                pass
        return got


class DlpingKeysTest(Base):
    def responder(self, *args, where="127.0.0.1:0"):
        pf = self.path("port-%d" % len(self.P.procs))
        out = self.path("responder-%d.out" % len(self.P.procs))
        p = self.start("dlping", "-l", where, "--port-file", pf, "-v", *args, stdout=out)
        return p, dltest.wait_port_file(pf, p), out

    def ping(self, target, *args, proto="native"):
        out = self.path("ping-%d.out" % len(self.P.procs))
        p = self.run_to_end("dlping", target, "-c", "5", "-i", "5ms", "--proto", proto, *args, stdout=out)
        with open(out) as f:
            return p, f.read()

    def test_right_psk_works_over_tcp_and_unix_native_and_fastsocket(self):
        for proto in ("native", "fastsocket"):
            for unix in (False, True):
                with self.subTest(proto=proto, unix=unix):
                    sock = self.sock_path("ping-%s.sock" % proto)
                    where = "unix:" + sock if unix else "127.0.0.1:0"
                    resp, port, rout = self.responder("--proto", proto, *pki().psk(), where=where)
                    p, out = self.ping("unix:" + sock if unix else "127.0.0.1:%d" % port, *pki().psk(), proto=proto)
                    self.assertEqual(p.returncode, 0, p.describe())
                    self.assertIn("5 received", out, out + p.describe())
                    resp.signal(2)
                    self.assertExited(resp, 20)
                    self.assertIn("TLS, psk 'datalink'", resp.stderr(), resp.describe())
                    self.assertNotIn("rejected", resp.stderr())
                    if unix and os.path.exists(sock):
                        os.unlink(sock)

    def test_certificates_with_a_ca_work(self):
        resp, port, _ = self.responder(*pki().certs("server"))
        p, out = self.ping("127.0.0.1:%d" % port, *pki().certs("client"))
        self.assertEqual(p.returncode, 0, p.describe())
        self.assertIn("5 received", out)

    def test_wrong_key_no_key_and_strangers_are_refused_and_the_responder_goes_on(self):
        resp, port, rout = self.responder(*pki().psk("a"))
        target = "127.0.0.1:%d" % port
        p, _ = self.ping(target, *pki().psk("b"))
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlping", "wrong pre-shared key")
        p, _ = self.ping(target)
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlping", "the listener speaks TLS: it needs keys")
        p, _ = self.ping(target, proto="fastsocket")
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlping", "the listener speaks TLS")
        # A stranger's probe-looking bytes get a TLS alert and no answer.
        got = self.stranger(port, os.urandom(200))
        self.assertTrue(got.startswith(b"\x15"), got)
        dltest.wait_until(lambda: resp.stderr().count("rejected connection") >= 4, dltest.t(10),
                          "four refusal lines")
        err = resp.stderr()
        self.assertIn("wrong pre-shared key", err)
        self.assertIn("does not speak TLS", err)
        self.assertNotIn("session from", err, "a refused peer got a session\n" + err)
        self.assertTrue(resp.running, resp.describe())
        p, out = self.ping(target, *pki().psk("a"))
        self.assertEqual(p.returncode, 0, p.describe())
        self.assertEqual(resp.stderr().count("session from"), 1, resp.stderr())
        resp.signal(2)
        self.assertExited(resp, 20)
        with open(rout) as f:
            self.assertEqual(f.read().count("probes answered"), 1)

    def test_a_crowd_of_strangers_is_logged_rate_limited(self):
        resp, port, _ = self.responder(*pki().psk())
        for _ in range(30):
            self.stranger(port, os.urandom(64))
        dltest.wait_until(lambda: "more connections refused" in resp.stderr(), dltest.t(10),
                          "the line about refusals not shown")
        lines = [l for l in resp.stderr().splitlines() if "rejected connection" in l]
        self.assertGreaterEqual(len(lines), 10, resp.stderr())
        self.assertLessEqual(len(lines), 15, "refusals are not rate-limited:\n" + resp.stderr())
        p, out = self.ping("127.0.0.1:%d" % port, *pki().psk())  # the real client still gets in
        self.assertEqual(p.returncode, 0, p.describe())

    def test_a_key_for_a_plain_responder_is_refused(self):
        resp, port, _ = self.responder()
        p, _ = self.ping("127.0.0.1:%d" % port, *pki().psk())
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlping", "does not speak TLS")
        dltest.wait_until(lambda: "this responder has no keys" in resp.stderr(), dltest.t(10), "the refusal")
        self.assertTrue(resp.running)

    def test_keys_on_udp_and_insecure_setups_are_usage_errors(self):
        for args, code, needle in (
                (["udp:127.0.0.1:9", "-c", "1"] + pki().psk(), dltest.EXIT_USAGE, "udp"),
                (["-l", "udp:127.0.0.1:0"] + pki().psk(), dltest.EXIT_USAGE, "DTLS"),
                (["127.0.0.1:9", "--cert", pki().path("client.pem"), "--key", pki().path("client.key")],
                 dltest.EXIT_USAGE, "needs --ca or --pin"),
                (["-l", "127.0.0.1:0", "--cert", pki().path("server.pem"), "--key", pki().path("server.key")],
                 dltest.EXIT_USAGE, "anyone could connect")):
            with self.subTest(args=args):
                p = self.run_to_end("dlping", *args)
                self.assertEqual(p.returncode, code, p.describe())
                self.assertOneLineError(p, "dlping", needle)
        open_key = self.path("open.psk")
        with open(pki().path("a.psk")) as src, open(open_key, "w") as dst:
            dst.write(src.read())
        os.chmod(open_key, 0o644)
        p = self.run_to_end("dlping", "127.0.0.1:9", "--psk", open_key)
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "dlping", "too open")


class PymodaqKeysTest(Base):
    def server(self, *keys, commands="grab 2D\nquit\n"):
        cmds = self.path("cmds-%d" % len(self.P.procs))
        with open(cmds, "w") as f:
            f.write(commands)
        pf = self.path("port-%d" % len(self.P.procs))
        out = self.path("server-%d.out" % len(self.P.procs))
        p = self.start("pymodaq-emu", "server", "-l", "127.0.0.1:0", "--port-file", pf, "-w", "60", *keys,
                       stdin=cmds, stdout=out)
        return p, dltest.wait_port_file(pf, p), out

    def test_right_psk_works_and_everyone_else_is_refused(self):
        srv, port, out = self.server(*pki().psk("a"))
        target = "127.0.0.1:%d" % port
        p = self.run_to_end("pymodaq-emu", "grabber", target, *pki().psk("b"))
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "pymodaq-emu", "wrong pre-shared key")
        p = self.run_to_end("pymodaq-emu", "grabber", target)
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "pymodaq-emu", "the listener speaks TLS: it needs keys")
        p = self.run_to_end("pymodaq-emu", "actuator", target, *pki().psk("b"))
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        got = self.stranger(port, b"\x00\x00\x00\x07GRABBER")  # a plain PyMoDAQ client's hello
        self.assertTrue(got.startswith(b"\x15"), got)
        dltest.wait_until(lambda: srv.stderr().count("rejected connection") >= 4, dltest.t(10), "four refusals")
        with open(out) as f:
            self.assertEqual(f.read(), "", "a refused peer reached the server's output")
        self.assertTrue(srv.running, srv.describe())
        g = self.run_to_end("pymodaq-emu", "grabber", target, *pki().psk("a"))
        self.assertEqual(g.returncode, 0, g.describe())
        self.assertExited(srv, 30, 0)
        with open(out) as f:
            text = f.read()
        self.assertEqual(text.count('"event":"connected"'), 1, text)
        self.assertIn('"command":"Done"', text)
        err = srv.stderr()
        self.assertIn("wrong pre-shared key", err)
        self.assertIn("does not speak TLS", err)

    def test_actuator_with_certificates(self):
        srv, port, out = self.server(*pki().certs("server"), "--expect", "actuator", commands="move_abs 0.5\nquit\n")
        a = self.run_to_end("pymodaq-emu", "actuator", "127.0.0.1:%d" % port, "--velocity", "0",
                            *pki().certs("client"))
        self.assertEqual(a.returncode, 0, a.describe())
        self.assertExited(srv, 30, 0)
        with open(out) as f:
            self.assertIn('"command":"move_done"', f.read())

    def test_a_key_for_a_plain_server_is_refused(self):
        srv, port, out = self.server()
        p = self.run_to_end("pymodaq-emu", "grabber", "127.0.0.1:%d" % port, *pki().psk())
        self.assertEqual(p.returncode, EXIT_AUTH, p.describe())
        self.assertOneLineError(p, "pymodaq-emu", "does not speak TLS")
        dltest.wait_until(lambda: "this listener has no keys" in srv.stderr(), dltest.t(10), "the refusal")

    def test_insecure_setups_are_refused(self):
        for args, code, needle in (
                (["grabber", "127.0.0.1:9", "--cert", pki().path("client.pem"), "--key", pki().path("client.key")],
                 dltest.EXIT_USAGE, "needs --ca or --pin"),
                (["server", "-l", "0", "--cert", pki().path("server.pem"), "--key", pki().path("server.key")],
                 dltest.EXIT_USAGE, "anyone could connect"),
                (["grabber", "127.0.0.1:9", "--psk", pki().path("a.psk"), "--pin", "x"],
                 dltest.EXIT_USAGE, "cannot be combined")):
            with self.subTest(args=args):
                p = self.run_to_end("pymodaq-emu", *args)
                self.assertEqual(p.returncode, code, p.describe())
                self.assertOneLineError(p, "pymodaq-emu", needle)


if __name__ == "__main__":
    unittest.main()
