#!/usr/bin/python3
"""Tests of the Python binding (python/datalink.py over libdatalink.so), with the dlsend/dlrecv
tools and raw classic peers as the other side. Every wait is bounded; every subprocess is killed
in a finally block.

Run by Bazel (python:datalink_test), or by hand from the repo root after
`bazel build //lib/api:libdatalink.so //tools/...`:
    /usr/bin/python3 python/datalink_test.py [-v] [Test.name]
Options (before unittest's): --lib PATH, --dlsend PATH, --dlrecv PATH (defaults: env
DATALINK_LIB/DLSEND/DLRECV, else bazel-bin/...).
"""

import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import unittest.mock

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _take_option(name):
    if name in sys.argv:
        i = sys.argv.index(name)
        value = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
        return value
    return None


_lib = _take_option("--lib")
if _lib:
    os.environ["DATALINK_LIB"] = _lib
DLSEND = _take_option("--dlsend") or os.environ.get("DLSEND") or os.path.join(REPO, "bazel-bin/tools/dlsend/dlsend")
DLRECV = _take_option("--dlrecv") or os.environ.get("DLRECV") or os.path.join(REPO, "bazel-bin/tools/dlrecv/dlrecv")

sys.path.insert(0, HERE)
import datalink  # noqa: E402
from datalink import Databridge, Datalink, DatalinkError  # noqa: E402

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

DEADLINE = 30  # seconds: upper bound of any single wait in these tests


def wait_port_file(path, proc, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError("process exited early with %s" % proc.returncode)
        try:
            with open(path) as f:
                text = f.read()
            if text.endswith("\n"):
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise AssertionError("no port file after %s s" % timeout)


def kill(proc):
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(5)


def wait_until(pred, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


# Classic frames (see /work/shared/notes/datalink-classic.md).
def classic_frame(payload, ts):
    return b"\x20" * 5 + struct.pack("<qd", len(payload), ts) + b"\x21" * 5 + payload + b"\x22" * 5


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_classic_frame(sock, skip_empty=True):
    """(payload, ts) of the next frame; zero-length frames (keepalives) are skipped."""
    while True:
        head = recv_exact(sock, 26)
        assert head[:5] == b"\x20" * 5 and head[21:26] == b"\x21" * 5, head
        n, ts = struct.unpack("<qd", head[5:21])
        payload = recv_exact(sock, n)
        assert recv_exact(sock, 5) == b"\x22" * 5
        if n == 0 and skip_empty:
            continue
        return payload, ts


class Base(unittest.TestCase):
    def setUp(self):
        self.links = []
        self.procs = []
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        for p in self.procs:
            kill(p)
        for link in self.links:
            link.close()
        self.tmp.cleanup()

    def link(self, *args, **kw):
        kw.setdefault("close_timeout", 3.0)
        link = Datalink(*args, **kw)
        self.links.append(link)
        return link

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def pair(self, **kw):
        server = self.link(listen="127.0.0.1:0", **kw)
        client = self.link("127.0.0.1", server.port, **kw)
        self.assertTrue(wait_until(lambda: server.is_ready() and client.is_ready()))
        return server, client


class InProcess(Base):
    def test_round_trip_and_state(self):
        server, client = self.pair()
        self.assertTrue(server.port > 0)
        self.assertFalse(server.has_data())
        client.write(b"hello", timestamp=42.5)
        msg = server.read(timeout=5)
        self.assertEqual(msg, (b"hello", 5, 42.5))
        before = time.time()
        server.write(bytearray(b"back"))
        payload, size, ts = client.read(timeout=5)
        self.assertEqual((payload, size), (b"back", 4))
        self.assertTrue(before - 1 <= ts <= time.time() + 1, ts)  # default: time.time()
        client.write(memoryview(b"view"))
        self.assertEqual(server.read(timeout=5)[0], b"view")
        self.assertIsNone(server.read(timeout=0.1))
        self.assertTrue(client.write_keep_alive())
        self.assertTrue(client.flush(timeout=5))

    def test_non_ascii_str(self):
        server, client = self.pair()
        text = "héllo wörld ✓ 日本語 🚀"
        client.write(text)
        payload, size, ts = server.read(timeout=5)
        self.assertEqual(size, len(text.encode("utf-8")))
        self.assertEqual(payload.decode("utf-8"), text)

    def test_empty_message_native(self):
        server, client = self.pair()
        client.write(b"", timestamp=3.0)
        self.assertEqual(server.read(timeout=5), (b"", 0, 3.0))

    @unittest.skipIf(np is None, "numpy missing")
    def test_numpy_round_trip(self):
        server, client = self.pair()
        arr = np.random.default_rng(1).random((1000, 1000, 3), dtype=np.float32)
        client.write(arr, timestamp=1234.5)
        got = server.read_np((1000, 1000, 3), np.float32, timeout=DEADLINE)
        self.assertIsNotNone(got)
        out, ts = got
        self.assertEqual(ts, 1234.5)
        self.assertEqual(out.dtype, np.float32)
        self.assertTrue(np.array_equal(out, arr))
        # Non-contiguous arrays go as their C-order bytes.
        t = np.arange(12, dtype=np.int32).reshape(3, 4).T
        client.write(t, timestamp=2.0)
        out, ts = server.read_np((4, 3), np.int32, timeout=5)
        self.assertTrue(np.array_equal(out, t))
        # Size mismatch: ValueError, message kept.
        client.write(np.zeros(4, np.uint8))
        with self.assertRaises(ValueError):
            server.read_np((5,), np.uint8, timeout=5)
        self.assertEqual(server.read(timeout=5)[1], 4)

    def test_read_into_and_too_large(self):
        server, client = self.pair(max_message=1000)
        for n in (2000, 1001):  # max + 1 is refused, the link stays usable
            with self.assertRaises(DatalinkError):
                client.write(b"x" * n)
        client.write(b"y" * 1000)   # exactly max
        small = bytearray(999)
        with self.assertRaises(ValueError):  # does not fit: the message stays
            server.read_into(small, timeout=5)
        buf = bytearray(1000)
        self.assertEqual(server.read_into(buf, timeout=5)[0], 1000)
        self.assertEqual(bytes(buf), b"y" * 1000)

    def test_the_peers_smaller_limit_is_exact(self):
        server = self.link(listen="127.0.0.1:0", max_message=1000)
        client = self.link("127.0.0.1", server.port, max_message=4096)
        self.assertTrue(wait_until(lambda: server.is_ready() and client.is_ready()))
        with self.assertRaises(DatalinkError) as cm:
            client.write(b"x" * 1001)
        self.assertIn("1000", str(cm.exception))
        client.write(b"y" * 1000)
        client.write(b"z")
        self.assertEqual(server.read(timeout=5), (b"y" * 1000, 1000, unittest.mock.ANY))
        self.assertEqual(server.read(timeout=5)[0], b"z")
        self.assertFalse(client.failed() or server.failed())

    def test_close_ends_peer_input_and_context_manager(self):
        server = self.link(listen="127.0.0.1:0")
        with Datalink("127.0.0.1", server.port) as client:
            for i in range(100):
                client.write(b"m%d" % i, timestamp=i)
            got = []
            reader = threading.Thread(target=lambda: got.extend(iter(lambda: server.read(timeout=DEADLINE), None)))
            reader.start()
        reader.join(DEADLINE)
        self.assertFalse(reader.is_alive())
        self.assertEqual([g[0] for g in got], [b"m%d" % i for i in range(100)])
        self.assertTrue(server.peer_finished())
        with self.assertRaises(DatalinkError):
            client.write(b"late")

    def test_databridge_unreferenced(self):
        a = self.link(listen="127.0.0.1:0")
        b = self.link(listen="127.0.0.1:0")
        ca = self.link("127.0.0.1", a.port)
        Databridge(a, b)  # not kept: the registry keeps it alive
        gc.collect()
        for i in range(20):  # b has no peer yet: held, not dropped
            ca.write(b"to-b %d" % i, timestamp=i)
        time.sleep(0.3)
        cb = self.link("127.0.0.1", b.port)
        for i in range(20):
            self.assertEqual(cb.read(timeout=5), (b"to-b %d" % i, len(b"to-b %d" % i), float(i)))
        cb.write(b"to-a", timestamp=9.0)
        self.assertEqual(ca.read(timeout=5), (b"to-a", 4, 9.0))
        self.assertEqual(len(Databridge._registry), 1)
        bridge = next(iter(Databridge._registry))
        self.assertEqual(bridge.forwarded(), 21)
        a.close()  # closes the bridge first
        self.assertEqual(len(Databridge._registry), 0)

    def test_bad_arguments(self):
        with self.assertRaises(DatalinkError):
            Datalink(listen="not an endpoint:::")
        with self.assertRaises(DatalinkError):
            Datalink("127.0.0.1", 9, proto="bogus")


class Keys(Base):
    def write_psk(self, name):
        path = self.path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("datalink %s\n" % os.urandom(32).hex())
        return path

    def test_pre_shared_key_works_and_a_wrong_one_is_refused(self):
        good, other = self.write_psk("a.psk"), self.write_psk("b.psk")
        server, client = self.pair(psk=good)
        client.write(b"secret")
        self.assertEqual(server.read(timeout=5)[0], b"secret")
        bad = self.link("127.0.0.1", server.port, psk=other)
        self.assertTrue(wait_until(lambda: "pre-shared key" in (bad.last_error() or "")), bad.last_error())
        self.assertFalse(bad.is_ready())
        plain = self.link("127.0.0.1", server.port)
        self.assertTrue(wait_until(lambda: "needs keys" in (plain.last_error() or "")), plain.last_error())
        client.write(b"still")  # the server's peer was never disturbed
        self.assertEqual(server.read(timeout=5)[0], b"still")
        os.chmod(other, 0o644)
        with self.assertRaises(DatalinkError) as cm:
            self.link("127.0.0.1", server.port, psk=other)
        self.assertIn("too open", str(cm.exception))


class WithTools(Base):
    def setUp(self):
        super().setUp()
        for tool in (DLSEND, DLRECV):
            if not os.access(tool, os.X_OK):
                self.skipTest("tool missing: %s (bazel build //tools/...)" % tool)

    def test_python_sender_to_dlrecv(self):
        port_file, out = self.path("port"), self.path("out")
        with open(out, "wb") as f:
            recv = subprocess.Popen([DLRECV, "-l", "127.0.0.1:0", "--port-file", port_file], stdout=f)
        self.procs.append(recv)
        port = wait_port_file(port_file, recv)
        sender = self.link("127.0.0.1", port)
        chunks = [os.urandom(n) for n in (1, 1000, 65536, 1 << 20, 3, 300000)] + ["text ✓"]
        for c in chunks:
            sender.write(c)
        sender.close()  # END frame: dlrecv sees the end of the stream
        self.assertEqual(recv.wait(DEADLINE), 0)
        expected = b"".join(c.encode() if isinstance(c, str) else c for c in chunks)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), expected)

    def test_dlsend_to_python_server(self):
        data = os.urandom(5 << 20)
        infile = self.path("in")
        with open(infile, "wb") as f:
            f.write(data)
        server = self.link(listen="127.0.0.1:0")
        send = subprocess.Popen([DLSEND, "127.0.0.1:%d" % server.port, "-f", infile])
        self.procs.append(send)
        got = []
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            m = server.read(timeout=1)
            if m is None:
                if server.peer_finished():
                    break
                continue
            got.append(m[0])
        self.assertTrue(server.peer_finished())
        self.assertEqual(b"".join(got), data)
        server.close()  # our END: dlsend completes
        self.assertEqual(send.wait(DEADLINE), 0)

    def test_blocking_read_ends_when_the_peer_is_killed_for_good(self):
        # read() with no timeout while the peer (dlsend) is killed -9 mid-stream: it returns
        # None once --reconnect has run out, and the link says why; writes then fail.
        server = self.link(listen="127.0.0.1:0", timeout=1000, reconnect=1.0)
        send = subprocess.Popen([DLSEND, "-t", "1s", "127.0.0.1:%d" % server.port],
                                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(send)
        send.stdin.write(b"before")
        send.stdin.flush()
        self.assertEqual(server.read(timeout=DEADLINE)[0], b"before")
        result = {}
        reader = threading.Thread(target=lambda: result.setdefault("r", server.read()))
        reader.start()
        send.kill()
        send.wait(5)
        send.stdin.close()
        reader.join(DEADLINE)
        self.assertFalse(reader.is_alive(), "read() outlived a peer that is gone for good")
        self.assertIsNone(result["r"])
        self.assertTrue(server.failed())
        self.assertIn("gone for 1.0 s", server.last_error() or "")
        with self.assertRaises(DatalinkError):
            server.write(b"late")

    def test_close_that_times_out_still_delivers_what_reached_the_socket(self):
        # The receiver (dlrecv) is stopped while we write; close() runs out of time with our
        # messages and END unacknowledged, but already in the socket. When the receiver wakes
        # it has the whole stream: exit 0, every byte, not a session "stopped" or lost. (So
        # close() must not send a stop notice behind an END that is on its way.)
        out = self.path("out")
        with open(out, "wb") as f:
            recv = subprocess.Popen([DLRECV, "-l", "127.0.0.1:0", "--port-file", self.path("port")],
                                    stdout=f, stderr=subprocess.PIPE)
        self.procs.append(recv)
        port = wait_port_file(self.path("port"), recv)
        sender = self.link("127.0.0.1", port, window=1 << 20, close_timeout=0.5)
        sender.write(b"first")
        self.assertTrue(sender.flush(timeout=DEADLINE))
        recv.send_signal(signal.SIGSTOP)
        self.addCleanup(lambda: recv.poll() is None and recv.send_signal(signal.SIGCONT))
        for _ in range(4):  # little enough for the socket buffers
            sender.write(b"y" * 4096)
        t0 = time.monotonic()
        sender.close()
        self.assertLess(time.monotonic() - t0, 5, "close() outlived its close_timeout")
        recv.send_signal(signal.SIGCONT)
        self.assertEqual(recv.wait(DEADLINE), 0, recv.stderr.read().decode())
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"first" + b"y" * 16384)

    def test_classic_tools_interop(self):
        # dlsend --proto classic -> Python "auto" server; Python classic client -> dlrecv.
        server = self.link(listen="127.0.0.1:0", proto="auto")
        infile = self.path("in")
        with open(infile, "wb") as f:
            f.write(b"classic bytes")
        send = subprocess.Popen([DLSEND, "--proto", "classic", "127.0.0.1:%d" % server.port, "-f", infile])
        self.procs.append(send)
        payload, size, ts = server.read(timeout=DEADLINE)
        self.assertEqual(payload, b"classic bytes")
        self.assertEqual(send.wait(DEADLINE), 0)

    def test_python_classic_client_to_dlrecv(self):
        port_file, out = self.path("port"), self.path("out")
        with open(out, "wb") as f:
            recv = subprocess.Popen([DLRECV, "--proto", "classic", "--close-ends", "-l", "127.0.0.1:0",
                                     "--port-file", port_file], stdout=f)
        self.procs.append(recv)
        port = wait_port_file(port_file, recv)
        client = self.link("127.0.0.1", port, proto="classic")
        client.write(b"abc")
        client.write(b"def")
        self.assertTrue(client.flush(timeout=DEADLINE))
        client.close()  # with --close-ends, the orderly close is the end of the stream
        try:
            rc = recv.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        self.assertEqual(rc, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"abcdef")


class ClassicRawPeer(Base):
    def test_worked_example_bytes(self):
        self.assertEqual(classic_frame(b"ABC", 123.45).hex(),
                         "2020202020" "0300000000000000" "cdccccccccdc5e40" "2121212121" "414243" "2222222222")

    def test_raw_server_role(self):
        # A raw classic server (Python socket); our Datalink is the classic client.
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(DEADLINE)
        try:
            client = self.link("127.0.0.1", ls.getsockname()[1], proto="classic")
            conn, _ = ls.accept()
            conn.settimeout(DEADLINE)
            with conn:
                client.write(b"ABC", timestamp=123.45)
                self.assertEqual(recv_exact(conn, 34), classic_frame(b"ABC", 123.45))  # byte-exact
                client.write("ü", timestamp=1.0)
                self.assertEqual(read_classic_frame(conn), ("ü".encode(), 1.0))
                conn.sendall(classic_frame(b"", 1.0))            # keepalive: not delivered
                conn.sendall(classic_frame(b"neg", -1.0))       # delivered (seed would drop it)
                conn.sendall(classic_frame(b"from server", 7.25))
                self.assertEqual(client.read(timeout=5), (b"neg", 3, -1.0))
                self.assertEqual(client.read(timeout=5), (b"from server", 11, 7.25))
                self.assertTrue(client.is_ready())
        finally:
            ls.close()

    def test_raw_client_role(self):
        # A raw classic client connects to our classic Datalink server.
        server = self.link(listen="127.0.0.1:0", proto="classic", drop_negative_ts=True)
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as s:
            s.sendall(classic_frame(b"one", 1.5) + classic_frame(b"dropped", -1.0) + classic_frame(b"two", 2.5))
            self.assertEqual(server.read(timeout=5), (b"one", 3, 1.5))
            self.assertEqual(server.read(timeout=5), (b"two", 3, 2.5))
            self.assertTrue(wait_until(server.is_ready))
            arr_bytes = bytes(range(256)) * 4
            server.write(arr_bytes, timestamp=9.0)
            self.assertEqual(read_classic_frame(s), (arr_bytes, 9.0))
        # The raw client left; a new one is served (the seed server accepts again).
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as s:
            s.sendall(classic_frame(b"again", 3.0))
            self.assertEqual(server.read(timeout=5), (b"again", 5, 3.0))

    def test_auto_server_detects_raw_classic_client(self):
        server = self.link(listen="127.0.0.1:0", proto="auto")
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as s:
            s.sendall(classic_frame(b"auto", 4.0))
            self.assertEqual(server.read(timeout=5), (b"auto", 4, 4.0))


class ThreadsAndTypes(Base):
    def test_close_while_another_thread_reads(self):
        server, client = self.pair()
        result = {}
        th = threading.Thread(target=lambda: result.setdefault("r", server.read()))
        th.start()
        time.sleep(0.3)
        server.close()              # must not free the handle under the reader
        th.join(5)
        self.assertFalse(th.is_alive())
        self.assertIsNone(result["r"])

    def test_object_arrays_are_refused(self):
        import numpy as np
        server, client = self.pair()
        with self.assertRaises(TypeError):
            client.write(np.array([object(), "x"], dtype=object))
        client.write(np.zeros(2, np.int64))
        with self.assertRaises(TypeError):
            server.read_np((2,), object)
        arr, _ = server.read_np((2,), np.int64, timeout=5)
        self.assertEqual(arr.tolist(), [0, 0])

    def test_concurrent_readers_get_exact_messages(self):
        server, client = self.pair()
        sizes = [1000 if i % 2 else 10 for i in range(2000)]
        got, lock = [], threading.Lock()

        def reader():
            while True:
                m = server.read(timeout=2)
                if m is None:
                    return
                with lock:
                    got.append(m)
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for n in sizes:
            client.write(bytes([65]) * n)
        for t in threads:
            t.join(30)
        self.assertEqual(len(got), len(sizes))
        for payload, size, _ in got:
            self.assertEqual(len(payload), size)
            self.assertEqual(payload, b"A" * size)

    def test_both_directions_at_full_speed_at_once(self):
        # Each side writes 32 MiB while reading the other's: small windows, so both writers
        # block on backpressure at once; neither may wait for the other for ever.
        server, client = self.pair(window=256 << 10)
        n, size = 512, 64 << 10
        results = {}

        def writer(link, tag):
            for i in range(n):
                link.write(bytes([tag]) * size, timestamp=float(i))
            results[("w", tag)] = link.flush(timeout=DEADLINE)

        def reader(link, tag):
            count = 0
            while count < n:
                m = link.read(timeout=DEADLINE)
                if m is None or m[1] != size or m[0][:1] != bytes([tag]) or m[2] != float(count):
                    break
                count += 1
            results[("r", tag)] = count
        threads = [threading.Thread(target=writer, args=(client, 1)),
                   threading.Thread(target=writer, args=(server, 2)),
                   threading.Thread(target=reader, args=(server, 1)),
                   threading.Thread(target=reader, args=(client, 2))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(DEADLINE)
        self.assertFalse(any(th.is_alive() for th in threads), "a direction stalled: %r" % results)
        self.assertEqual(results, {("w", 1): True, ("w", 2): True, ("r", 1): n, ("r", 2): n})

    def test_classic_server_waits_for_the_next_client(self):
        server = self.link(listen="127.0.0.1:0", proto="classic")
        first = self.link("127.0.0.1", server.port, proto="classic")
        first.write(b"one")
        self.assertEqual(server.read(timeout=5)[0], b"one")
        first.close()
        time.sleep(0.3)
        second = self.link("127.0.0.1", server.port, proto="classic")
        threading.Timer(0.5, lambda: second.write(b"two")).start()
        m = server.read(timeout=5)   # a classic client closing is not the end of the input
        self.assertIsNotNone(m)
        self.assertEqual(m[0], b"two")


if __name__ == "__main__":
    unittest.main()
