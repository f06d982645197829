#!/usr/bin/python3
"""dlping black-box tests: a responder and a client on loopback, statistics checked against
delays the responder adds on purpose, fastSocket lines checked byte for byte against raw peers
written from shared/notes/fastsocket.md, the SVG/JSON/CSV outputs parsed, and garbage thrown at
the responder.

Binary: $DLPING (run_py_test.sh --dlping sets it) or bazel-bin/tools/dlping/dlping.
Run by hand from the repo root:  /usr/bin/python3 tests/test_dlping.py
"""

import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest
import uuid
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import t, wait_port_file, wait_until  # noqa: E402

# Tolerance for delays the responder adds: a measured RTT must lie within
# [delay, delay + SLACK]; SLACK covers scheduling on a loaded 2-CPU machine.
SLACK = 0.030 * dltest.SCALE


class DlpingCase(dltest.DlTestCase):
    """The helpers, without tests (test_dlping_adversary.py builds on them too)."""
    need_binaries = False

    @classmethod
    def setUpClass(cls):
        cls.DLPING = dltest.dlping_path()
        if not (os.path.isfile(cls.DLPING) and os.access(cls.DLPING, os.X_OK)):
            raise AssertionError("dlping not built: %s (bazel build //tools/dlping or set DLPING)" % cls.DLPING)

    # -- helpers
    def responder(self, *args, endpoint="127.0.0.1:0", stdout=None, port_file=None):
        pf = port_file or self.path("port-%d" % len(self.P.procs))
        out = stdout or self.path("responder-%d.out" % len(self.P.procs))
        p = self.P.start([self.DLPING, "-l", endpoint, "--port-file", pf] + list(args), stdout=out)
        p.out_path = out
        return p, wait_port_file(pf, p)

    def client(self, *args, timeout=30, expect=0):
        out = self.path("client-%d.out" % len(self.P.procs))
        p = self.P.start([self.DLPING] + list(args), stdout=out)
        rc = p.wait(t(timeout))
        if rc is None:
            self.fail("dlping client did not finish within %ss\n%s" % (t(timeout), self.P.describe()))
        with open(out, "rb") as f:
            text = f.read().decode()
        if expect is not None:
            self.assertEqual(rc, expect, "client exit %s\nstdout:\n%s\n%s" % (rc, text, self.P.describe()))
        return p, text

    def client_json(self, *args, **kw):
        p, text = self.client("--json", *args, **kw)
        try:
            return json.loads(text)
        except ValueError as e:
            self.fail("--json output does not parse (%s):\n%s" % (e, text))

    def read_text(self, path):
        with open(path) as f:
            return f.read()

    def read_out(self, proc):
        with open(proc.out_path, "rb") as f:
            return f.read().decode()


class DlpingTest(DlpingCase):
    # -- the native exchange
    def test_counts_and_rtt_reflect_a_reply_delay(self):
        delay = 0.020
        r, port = self.responder("--reply-delay", "20ms")
        j = self.client_json("-c", "10", "-i", "30ms", "127.0.0.1:%d" % port)
        ph = j["phases"][0]
        self.assertEqual((ph["sent"], ph["received"], ph["lost"], ph["duplicated"], ph["timeouts"]), (10, 10, 0, 0, 0))
        rtt = ph["rtt"]
        self.assertEqual(rtt["count"], 10)
        # Held before the responder stamps it: the delay is path, so the RTT shows it.
        self.assertGreaterEqual(rtt["min"], delay * 1e9)
        self.assertLessEqual(rtt["p50"], (delay + SLACK) * 1e9, rtt)
        self.assertLessEqual(rtt["min"], rtt["p50"])
        self.assertLessEqual(rtt["p50"], rtt["p99"])
        self.assertLessEqual(rtt["p99"], rtt["max"] * (1 + j["histogram_relative_error"]))
        self.assertGreaterEqual(ph["raw"]["min"], rtt["min"])
        self.assertLess(ph["turnaround"]["mean"], 0.005e9)
        self.assertTrue(ph["turnaround_removed"])
        self.assertEqual(sum(b[2] for b in ph["histogram"]), 10)
        for low, high, count in ph["histogram"]:
            self.assertLess(low, high)
            self.assertLessEqual((high - low) / max(low, 1), 1 / 128 + 1e-9)
        # The responder learned the client's figure from the ACK3s and measured its own side
        # (the last ACK3 is held 20 ms too: wait for the session to end before stopping it).
        wait_until(lambda: "acknowledged" in self.read_out(r), 10, "the session summary")
        r.signal(signal.SIGINT)
        self.assertEqual(r.wait(t(10)), dltest.EXIT_INTERRUPTED, r.describe())
        out = self.read_out(r)
        self.assertIn("10 probes answered, 10 acknowledged", out)
        m = re.search(r"rtt seen from here[^:]*: p50 ([0-9.]+) ms", out)
        self.assertIsNotNone(m, out)
        self.assertGreaterEqual(float(m.group(1)), delay * 1e3 * 0.99, out)

    def test_turnaround_is_removed_from_the_rtt(self):
        hold = 0.025
        self.responder_proc, port = self.responder("--turnaround", "25ms")
        j = self.client_json("-c", "8", "-i", "40ms", "127.0.0.1:%d" % port)
        ph = j["phases"][0]
        self.assertEqual(ph["received"], 8)
        # The raw round trip includes the hold; the reported RTT does not.
        self.assertGreaterEqual(ph["raw"]["min"], hold * 1e9)
        self.assertGreaterEqual(ph["turnaround"]["min"], hold * 1e9)
        self.assertLessEqual(ph["turnaround"]["p50"], (hold + SLACK) * 1e9)
        self.assertLess(ph["rtt"]["p50"], SLACK * 1e9, ph["rtt"])
        self.assertGreater(ph["rtt"]["min"], 0)

    def test_probe_lines_and_text_summary(self):
        r, port = self.responder()
        _, text = self.client("-c", "3", "-i", "10ms", "--histogram", "127.0.0.1:%d" % port)
        lines = [l for l in text.splitlines() if " bytes from " in l]
        self.assertEqual(len(lines), 3, text)
        self.assertRegex(lines[0], r"^96 bytes from 127\.0\.0\.1:%d: seq=1 rtt=[0-9.]+ [nuµm]?s \(raw " % port)
        self.assertIn("3 sent, 3 received, 0 lost (0.0%)", text)
        self.assertIn("p50/p90/p99/p99.9/p99.99", text)
        self.assertIn("RFC 3550", text)
        self.assertIn("RTT/2 (not one-way delay", text)
        self.assertIn("connection set-up", text)
        self.assertIn("|", text)  # the terminal histogram

    def test_unix_and_udp_endpoints(self):
        sock = self.sock_path("ping.sock")
        r, _ = self.responder(endpoint="unix:" + sock)
        j = self.client_json("-c", "5", "-i", "5ms", "unix:" + sock)
        self.assertEqual(j["transport"], "unix")
        self.assertEqual(j["phases"][0]["received"], 5)
        if dltest.have_ipv6_loopback():
            v6, port6 = self.responder(endpoint="[::1]:0")
            j = self.client_json("-c", "3", "-i", "5ms", "[::1]:%d" % port6)
            self.assertEqual(j["phases"][0]["received"], 3)
            self.assertEqual(j["target"], "[::1]:%d" % port6)
        u, port = self.responder(endpoint="udp:127.0.0.1:0")
        j = self.client_json("-c", "5", "-i", "5ms", "udp:127.0.0.1:%d" % port)
        self.assertEqual(j["transport"], "udp")
        self.assertIsNone(j["setup_ns"])
        self.assertEqual(j["phases"][0]["received"], 5)

    def test_flood_window_and_sweep(self):
        r, port = self.responder()
        j = self.client_json("-c", "500", "--flood", "--window", "4", "127.0.0.1:%d" % port)
        ph = j["phases"][0]
        self.assertEqual((ph["sent"], ph["received"], ph["out_of_order"], ph["duplicated"]), (500, 500, 0, 0))
        self.assertGreater(ph["rate"]["achieved"], 100)
        # Spinning instead of sleeping, pinned to a CPU: the same counts.
        j = self.client_json("-c", "300", "--flood", "--busy-poll", "--cpu", "0", "127.0.0.1:%d" % port)
        self.assertEqual((j["phases"][0]["sent"], j["phases"][0]["received"]), (300, 300))
        p, _ = self.client("-c", "1", "--cpu", "100000", "127.0.0.1:%d" % port, expect=dltest.EXIT_USAGE)
        self.assertIn("--cpu", p.stderr())
        j = self.client_json("--sweep", "64,1K,64K,1M", "-c", "5", "--warmup", "2", "-i", "5ms", "127.0.0.1:%d" % port)
        self.assertEqual([p["size"] for p in j["phases"]], [64, 1024, 65536, 1 << 20])
        self.assertEqual([p["wire_bytes"] for p in j["phases"]], [96, 1056, 65568, (1 << 20) + 32])
        self.assertEqual([p["received"] for p in j["phases"]], [5, 5, 5, 5])  # warm-up not counted
        # A megabyte each way takes about a millisecond here; a receive buffer that grew a byte
        # at a time once made it hundreds.
        self.assertLess(j["phases"][3]["rtt"]["p50"], 0.1e9 * dltest.SCALE, j["phases"][3]["rtt"])

    def test_two_clients_at_once_and_sigint_during_flood(self):
        # One client floods (one probe in flight: both ends wait in recv itself); a second
        # client must still be accepted and answered meanwhile, and SIGINT ends the flood.
        r, port = self.responder()
        out = self.path("flood.out")
        flood = self.P.start([self.DLPING, "--flood", "--every", "1000", "127.0.0.1:%d" % port], stdout=out)
        wait_until(lambda: " bytes from " in self.read_text(out), 10, "the flood under way")
        j = self.client_json("-c", "5", "-i", "10ms", "127.0.0.1:%d" % port, timeout=20)
        self.assertEqual(j["phases"][0]["received"], 5)
        self.assertIn(" bytes from ", self.read_text(out))
        self.assertTrue(flood.running)
        flood.signal(signal.SIGINT)
        self.assertEqual(flood.wait(t(10)), 0, flood.describe())
        m = re.search(r"(\d+) sent, (\d+) received, \d+ lost \([^)]*\), 0 duplicated, 0 out of order", self.read_text(out))
        self.assertIsNotNone(m, self.read_text(out))
        sent, received = int(m.group(1)), int(m.group(2))
        self.assertGreaterEqual(received, 1000)
        self.assertLessEqual(sent - received, 1)  # at most the one in flight

    def test_min_rate_counts_slow_intervals(self):
        r, port = self.responder()
        j = self.client_json("-c", "12", "-i", "20ms", "--min-rate", "1000", "127.0.0.1:%d" % port)
        rate = j["phases"][0]["rate"]
        self.assertEqual(rate["intervals"], 11)
        # Every 20 ms gap is slower than 1000/s; a reply delayed by a busy machine may shorten
        # the gap after it below 1 ms, so allow two such.
        self.assertGreaterEqual(rate["below_min_rate"], 9)
        self.assertLessEqual(rate["below_min_rate"], 11)
        self.assertGreaterEqual(rate["longest_gap_ns"], 0.019e9)
        self.assertLess(rate["achieved"], 75)
        j = self.client_json("-c", "12", "-i", "10ms", "--min-rate", "2", "127.0.0.1:%d" % port)
        self.assertEqual(j["phases"][0]["rate"]["below_min_rate"], 0)

    def test_loss_and_duplicates_through_a_udp_relay(self):
        r, port = self.responder(endpoint="udp:127.0.0.1:0")
        relay = UdpRelay(("127.0.0.1", port), ping_size=232, drop_every=3, duplicate={2})
        self.addCleanup(relay.close)
        j = self.client_json("-c", "12", "-i", "10ms", "-s", "200", "--timeout", "1s",
                             "udp:127.0.0.1:%d" % relay.port)
        ph = j["phases"][0]
        self.assertEqual(relay.dropped, 4)
        self.assertEqual((ph["sent"], ph["received"], ph["lost"], ph["timeouts"]), (12, 8, 4, 4))
        self.assertEqual(ph["duplicated"], 1)

    def test_no_responder(self):
        # Nothing listens: TCP refuses (exit 4), UDP times out (exit 7).
        port = dltest.reserved_port()
        p, _ = self.client("-c", "1", "127.0.0.1:%d" % port, expect=dltest.EXIT_CONNECT)
        self.assertIn("dlping: connect 127.0.0.1:%d" % port, p.stderr())
        p, _ = self.client("-c", "2", "-i", "50ms", "--timeout", "200ms", "udp:127.0.0.1:%d" % port,
                           expect=dltest.EXIT_TIMEOUT)
        self.assertIn("no reply", p.stderr())

    def test_sigint_prints_the_summary(self):
        r, port = self.responder()
        out = self.path("client.out")
        p = self.P.start([self.DLPING, "-i", "5ms", "127.0.0.1:%d" % port], stdout=out)
        wait_until(lambda: self.read_text(out).count(" bytes from ") >= 3, 10, "three replies")
        p.signal(signal.SIGUSR1)  # the summary so far, and on
        wait_until(lambda: "dlping statistics" in self.read_text(out), 10, "an interim summary")
        n = self.read_text(out).count(" bytes from ")
        wait_until(lambda: self.read_text(out).count(" bytes from ") > n + 2, 10, "more replies")
        self.assertTrue(p.running)
        r.signal(signal.SIGUSR1)
        wait_until(lambda: "so far:" in self.read_out(r), 10, "the responder's interim figures")
        p.signal(signal.SIGINT)
        self.assertEqual(p.wait(t(10)), 0, p.describe())
        text = self.read_text(out)
        self.assertEqual(text.count("dlping statistics"), 2)
        self.assertRegex(text, r"(\d+) sent, \d+ received")

    def test_plot_csv_and_json(self):
        r, port = self.responder()
        svg, csv = self.path("rtt.svg"), self.path("rtt.csv")
        j = self.client_json("-c", "20", "-i", "2ms", "--plot", svg, "--csv", csv, "127.0.0.1:%d" % port)
        self.assertEqual(j["phases"][0]["received"], 20)
        root = ET.parse(svg).getroot()  # parses as XML
        self.assertTrue(root.tag.endswith("svg"))
        ns = {"s": "http://www.w3.org/2000/svg"}
        series = [e for e in root.iter("{http://www.w3.org/2000/svg}polyline") if e.get("id") == "rtt-series"]
        self.assertEqual(len(series), 1)
        self.assertEqual(series[0].get("data-samples"), "20")
        points = series[0].get("points").split()
        self.assertEqual(len(points), 20)
        texts = " ".join(e.text or "" for e in root.iter("{http://www.w3.org/2000/svg}text"))
        self.assertIn("RTT", texts)
        self.assertIn("time since the first probe", texts)
        self.assertGreater(len(root.findall(".//s:rect[@class='bar']", ns)), 0)
        # The plotted y values follow the CSV's RTTs: the largest RTT is the highest point.
        rows = self.read_text(csv).splitlines()
        self.assertEqual(rows[0], "size,seq,sent_ns,rtt_ns,raw_ns,turnaround_ns,fastsocket_formula_ns,late")
        self.assertEqual(len(rows), 21)
        rtts = [int(r.split(",")[3]) for r in rows[1:]]
        ys = [float(p.split(",")[1]) for p in points]
        self.assertEqual(rtts.index(max(rtts)), ys.index(min(ys)))
        self.assertEqual(sorted(int(r.split(",")[1]) for r in rows[1:]), list(range(1, 21)))

    def test_garbage_does_not_hurt_the_responder(self):
        r, port = self.responder()
        cases = [
            os.urandom(4096),                                        # noise
            b"\xd7\x02\x00\x00\xff\xff\xff\xff" + bytes(24),         # absurd length
            b"\xd7\x01" + bytes(30) + b"DLNK",                       # a HELLO, truncated
            b"GET / HTTP/1.0\r\n\r\n",
            b"\xd7\x02\x00\x00\x00\x00\x00\x40" + bytes(24) + bytes(64),  # bad checksum
        ]
        for data in cases:
            s = socket.create_connection(("127.0.0.1", port), timeout=t(5))
            reply = b""
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:  # reset, or already closed after its ERROR frame
                pass
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    reply += b
            except OSError:
                pass
            finally:
                s.close()
            if reply:  # when it says anything, it is an ERROR frame
                self.assertEqual(reply[0], 0xD7, reply[:40])
                self.assertEqual(reply[1], 6, reply[:40])
        # A stranger that connects and says nothing, kept open while a real client measures.
        idle = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(idle.close)
        j = self.client_json("-c", "3", "-i", "5ms", "127.0.0.1:%d" % port)
        self.assertEqual(j["phases"][0]["received"], 3)
        self.assertTrue(r.running, r.describe())
        # fastSocket responder: bad JSON, a huge line, an unknown ack, then a good client still works.
        fr, fport = self.responder("--proto", "fastsocket")
        for data in [b"{not json}\n", b"[1,2]\n", b"x" * 70000, b'{"id": 1, "type": "message"}\n',
                     b'{"id": "a", "type": "ack", "send_and_ack_time_ns": 5}\n', b"\xff\xfe\n"]:
            s = socket.create_connection(("127.0.0.1", fport), timeout=t(5))
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                while s.recv(65536):
                    pass
            except OSError:  # reset, or already closed after its ERROR frame
                pass
            finally:
                s.close()
        j = self.client_json("--proto", "fastsocket", "-c", "3", "-i", "5ms", "127.0.0.1:%d" % fport)
        self.assertEqual(j["phases"][0]["received"], 3)
        self.assertTrue(fr.running, fr.describe())

    def test_responder_killed_mid_measurement(self):
        r, port = self.responder()
        out = self.path("client.out")
        p = self.P.start([self.DLPING, "-i", "5ms", "127.0.0.1:%d" % port], stdout=out)
        wait_until(lambda: self.read_text(out).count(" bytes from ") >= 3, 10, "three replies")
        r.kill()
        self.assertEqual(p.wait(t(10)), dltest.EXIT_DISCONNECTED, p.describe())
        self.assertIn("dlping statistics", self.read_text(out))  # what it measured, still
        self.assertRegex(p.stderr(), r"^dlping: 127\.0\.0\.1:%d: " % port)

    def test_a_peer_that_is_not_a_responder(self):
        # dlrecv expects a native HELLO and answers a PING with an ERROR frame: exit 6.
        dlrecv = dltest.dlrecv_path()
        if not os.path.exists(dlrecv):
            self.skipTest("dlrecv not built")
        pf = self.path("recv-port")
        self.P.start([dlrecv, "-l", "127.0.0.1:0", "--port-file", pf, "-o", "/dev/null"])
        port = wait_port_file(pf)
        p, _ = self.client("-c", "1", "127.0.0.1:%d" % port, expect=dltest.EXIT_PROTOCOL)
        self.assertTrue(p.stderr().startswith("dlping: "), p.stderr())
        # A fastSocket server's lines are not native frames either.
        srv = RawFastSocketServer()
        self.addCleanup(srv.close)
        p, _ = self.client("-c", "1", "127.0.0.1:%d" % srv.port, timeout=10, expect=None)
        self.assertIn(p.returncode, (dltest.EXIT_PROTOCOL, dltest.EXIT_DISCONNECTED, dltest.EXIT_TIMEOUT), p.describe())

    def test_usage_errors(self):
        for args in (["-c", "1", "-s", "10", "127.0.0.1:1"], ["--rate", "0", "127.0.0.1:1"],
                     ["--window", "4", "127.0.0.1:1"], ["--proto", "fastsocket", "udp:127.0.0.1:1"],
                     ["--sweep", "1K:64", "127.0.0.1:1"], ["--reply-delay", "1ms", "127.0.0.1:1"],
                     ["-l", "-c", "5", "127.0.0.1:0"], ["-l", "--json", "127.0.0.1:0"]):
            p, _ = self.client(*args, expect=dltest.EXIT_USAGE)
            self.assertTrue(p.stderr().startswith("dlping: "), p.stderr())

    # -- fastSocket, both roles, against raw peers written from the notes
    def test_fastsocket_client_against_a_raw_server(self):
        srv = RawFastSocketServer(bogus_acks=2)
        self.addCleanup(srv.close)
        j = self.client_json("--proto", "fastsocket", "-c", "20", "-i", "5ms", "-s", "10",
                             "127.0.0.1:%d" % srv.port)
        srv.join(t(10))
        self.assertIsNone(srv.error, srv.error)
        self.assertEqual(srv.messages, 20)
        self.assertEqual(srv.acks, 20)
        ph = j["phases"][0]
        self.assertEqual(ph["received"], 20)
        self.assertFalse(ph["turnaround_removed"])  # the server stamps nothing
        self.assertEqual(ph["unknown"], 2)  # acks for ids it never sent: counted, not answered
        self.assertIn("fastsocket_formula", ph)
        self.assertEqual(ph["fastsocket_formula"]["count"], 20)
        # The T1 the server was told is the client's raw RTT for that message.
        self.assertEqual(len(srv.t1), 20)
        self.assertAlmostEqual(sorted(srv.t1)[0], ph["raw"]["min"], delta=ph["raw"]["min"] * 0.01 + 1)

    def test_fastsocket_responder_against_a_raw_client(self):
        r, port = self.responder("--proto", "fastsocket")
        s = socket.create_connection(("127.0.0.1", port), timeout=t(10))
        f = s.makefile("rb")
        ids = [str(uuid.uuid4()) for _ in range(5)] + ["weird \"id\" \u00e9\U0001F600 \\ \n"]
        payloads = ["hello", {"k": [1, 2.5, None, True]}, 42, None, [], "x" * 1000]
        t1s = []
        for mid, payload in zip(ids, payloads):
            c0 = time.time_ns()
            s.sendall((json.dumps({"id": mid, "type": "message", "payload": payload}) + "\n").encode())
            line = f.readline()
            c3 = time.time_ns()
            self.assertEqual(line, (json.dumps({"id": mid, "type": "ack"}) + "\n").encode())
            t1s.append(c3 - c0)
            s.sendall((json.dumps({"id": mid, "type": "ack", "send_and_ack_time_ns": c3 - c0}) + "\n").encode())
        # Pipelined, as the real client does: three messages before reading any ack.
        more = [str(uuid.uuid4()) for _ in range(3)]
        s.sendall(b"".join((json.dumps({"id": m, "type": "message", "payload": i}) + "\n").encode()
                           for i, m in enumerate(more)))
        for m in more:
            self.assertEqual(f.readline(), (json.dumps({"id": m, "type": "ack"}) + "\n").encode())
            s.sendall((json.dumps({"id": m, "type": "ack", "send_and_ack_time_ns": 1000}) + "\n").encode())
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(f.read(), b"")
        s.close()
        wait_until(lambda: "client acks" in self.read_out(r), 10, "the session summary")
        out = self.read_out(r)
        self.assertIn("9 messages, 9 client acks", out)
        self.assertIn("fastSocket's formula T1 - T2/2", out)
        self.assertTrue(r.running)


class RawFastSocketServer(threading.Thread):
    """A fastSocket server from the notes: JSON lines, ack each message, read the client ack
    and compute T1 - T2/2. Checks every line the client sends is what Python's json.dumps
    writes for that object, with the notes' key order."""

    def __init__(self, bogus_acks=0):
        super().__init__(daemon=True)
        self.bogus_acks = bogus_acks  # acks for ids the client never sent, before the first real one
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.messages = self.acks = 0
        self.t1 = []
        self.latency = []
        self.error = None
        self.conn = None
        self.start()

    def run(self):
        try:
            c, _ = self.sock.accept()
            self.conn = c
            f = c.makefile("rb")
            s1 = {}
            while True:
                line = f.readline(65536)
                if not line:
                    break
                obj = json.loads(line)
                if (json.dumps(obj) + "\n").encode() != line:
                    raise AssertionError("not json.dumps output: %r" % line)
                if obj["type"] == "message":
                    if list(obj) != ["id", "type", "payload"]:
                        raise AssertionError("key order %r" % list(obj))
                    uuid.UUID(obj["id"], version=4)
                    self.messages += 1
                    s1[obj["id"]] = time.time_ns()
                    for _ in range(self.bogus_acks):
                        c.sendall((json.dumps({"id": str(uuid.uuid4()), "type": "ack"}) + "\n").encode())
                    self.bogus_acks = 0
                    c.sendall((json.dumps({"id": obj["id"], "type": "ack"}) + "\n").encode())
                else:
                    if list(obj) != ["id", "type", "send_and_ack_time_ns"] or obj["type"] != "ack":
                        raise AssertionError("client ack %r" % line)
                    if not isinstance(obj["send_and_ack_time_ns"], int):
                        raise AssertionError("T1 not an integer: %r" % line)
                    self.acks += 1
                    t1 = obj["send_and_ack_time_ns"]
                    self.t1.append(t1)
                    self.latency.append(t1 - (time.time_ns() - s1.pop(obj["id"])) / 2)
            c.close()
        except Exception as e:  # reported by the test
            self.error = repr(e)

    def close(self):
        self.sock.close()
        if self.conn:
            self.conn.close()


class UdpRelay(dltest.UdpRelay):
    """Forwards datagrams between one client and a target, dropping every Nth probe of
    `ping_size` bytes (client -> target) and sending the probes numbered in `duplicate` twice."""

    def __init__(self, target, ping_size, drop_every, duplicate=()):
        super().__init__(target)
        self.ping_size, self.drop_every, self.duplicate = ping_size, drop_every, set(duplicate)
        self.pings = self.dropped = 0
        self.start()

    def client_datagram(self, data):
        if len(data) == self.ping_size:
            self.pings += 1
            if self.pings % self.drop_every == 0:
                self.dropped += 1
                return []
            if self.pings in self.duplicate:
                return [data, data]
        return [data]


if __name__ == "__main__":
    dltest.main()
