#!/usr/bin/python3
"""dlsend/dlrecv against a raw classic Datalink peer (the seed's wire format, played here with
plain sockets and the golden frames in testdata/classic/), in both roles."""

import os
import socket
import struct
import sys
import threading
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402
from dltest import wait_port_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(os.path.dirname(HERE), "testdata", "classic")


def golden(name):
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


def classic_frame(payload, ts):
    return b" " * 5 + struct.pack("<qd", len(payload), ts) + b"!" * 5 + payload + b'"' * 5


def parse_classic(data):
    """Whole frames in data -> [(payload, ts)]; asserts the stream is clean."""
    out, i = [], 0
    while i < len(data):
        assert data[i:i + 5] == b" " * 5, "bad start at %d" % i
        n, ts = struct.unpack_from("<qd", data, i + 5)
        assert data[i + 21:i + 26] == b"!" * 5
        out.append((data[i + 26:i + 26 + n], ts))
        assert data[i + 26 + n:i + 31 + n] == b'"' * 5
        i += 31 + n
    return out


def parse_records(data):
    """dlrecv --framed output -> [(payload, ts)]."""
    out, i = [], 0
    while i < len(data):
        assert data[i:i + 4] == b"DLRF"
        n, ts = struct.unpack_from(">Id", data, i + 4)
        out.append((data[i + 16:i + 16 + n], ts))
        i += 16 + n
    return out


def recv_all(sock, timeout=20):
    sock.settimeout(dltest.t(timeout))
    chunks = []
    while True:
        b = sock.recv(1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


# What the raw peer sends, and what must come out of dlrecv (the seed would have dropped the
# negative-timestamp frame, and it does not resynchronise after garbage).
STREAM_PARTS = ["worked_example.bin", "keepalive.bin", "empty_frame.bin", "negative_ts.bin",
                "two_frames.bin", "garbage_then_frame.bin", "spaces_then_frame.bin",
                "large_frame.bin"]
LARGE = bytes((i * 7) % 251 for i in range(100000))
EXPECTED = [(b"ABC", 123.45), (b"lost in the seed", -1.0), (b"first", 1700000000.25),
            (b"second frame", 2.5), (b"after garbage", 42.0), (b"after a space", 7.0),
            (LARGE, 3.14159)]


def send_golden_stream(sock):
    """Sends the golden frames: one byte at a time for the worked example, two frames in one
    write, the rest in odd pieces."""
    for part in STREAM_PARTS:
        data = golden(part)
        if part == "worked_example.bin":
            for i in range(len(data)):
                sock.sendall(data[i:i + 1])
        elif part == "two_frames.bin":
            sock.sendall(data)
        else:
            for i in range(0, len(data), 997):
                sock.sendall(data[i:i + 997])


class ClassicPeerTest(dltest.DlTestCase):

    def _dlrecv_listening(self, *extra):
        out = self.path("out")
        recv, port = self.listen("dlrecv", "--framed", "-v", *extra, stdout=out)
        return recv, port, out

    def test_raw_client_to_listening_dlrecv_autodetect(self):
        recv, port, out = self._dlrecv_listening("--close-ends")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            send_golden_stream(s)
        self.assertExited(recv, 20, code=0)
        with open(out, "rb") as f:
            got = parse_records(f.read())
        self.assertEqual(got, EXPECTED)
        err = recv.stderr()
        self.assertIn("classic", err)                        # detected and said so at -v
        self.assertIn("negative-timestamp", err)             # warned once ...
        self.assertIn("1 negative-timestamp frames (0 dropped)", err)  # ... and counted
        self.assertIn("garbage bytes skipped", err)

    def test_drop_negative_ts_restores_seed_behaviour(self):
        recv, port, out = self._dlrecv_listening("--proto", "classic", "--drop-negative-ts", "--close-ends")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            send_golden_stream(s)
        self.assertExited(recv, 20, code=0)
        with open(out, "rb") as f:
            got = parse_records(f.read())
        self.assertEqual(got, [e for e in EXPECTED if e[1] >= 0])
        self.assertIn("(1 dropped)", recv.stderr())

    def _raw_server(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(dltest.t(20))
        self.addCleanup(srv.close)
        return srv, srv.getsockname()[1]

    def test_dlrecv_dials_raw_server(self):
        srv, port = self._raw_server()
        out = self.path("out")
        recv = self.dlrecv("--proto", "classic", "--close-ends", "--framed", "--wait", "5", "127.0.0.1:%d" % port,
                           stdout=out)
        conn, _ = srv.accept()
        with conn:
            send_golden_stream(conn)
        self.assertExited(recv, 20, code=0)
        with open(out, "rb") as f:
            self.assertEqual(parse_records(f.read()), EXPECTED)

    def test_dlsend_dials_raw_server(self):
        srv, port = self._raw_server()
        send = self.dlsend("--proto", "classic", "--lines", "127.0.0.1:%d" % port,
                           stdin=dltest.subprocess.PIPE)
        conn, _ = srv.accept()
        self.feed(send.popen.stdin, [b"alpha\n", "\u00e9t\u00e9\n".encode(), b"gamma\n"], close=True)
        with conn:
            data = recv_all(conn)
        self.assertExited(send, 20, code=0)
        frames = parse_classic(data)
        payloads = [p for p, ts in frames if p]               # keepalives aside
        self.assertEqual(payloads, [b"alpha", "\u00e9t\u00e9".encode(), b"gamma"])
        for p, ts in frames:
            if p:
                self.assertGreater(ts, 1.6e9)                 # unix time, as the seed's Python side

    def test_silent_raw_client_of_listening_dlsend(self):
        # A classic client that only receives says nothing: with --proto classic the listener
        # serves it at once (auto-detection never adopts silence; see test_faults).
        src = self.path("in")
        dltest.make_random_file(src, 3 * dltest.MiB)
        send, port = self.listen("dlsend", "--proto", "classic", "-f", src, "-v")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            data = recv_all(s)
        self.assertExited(send, 20, code=0)
        payload = b"".join(p for p, ts in parse_classic(data))
        with open(src, "rb") as f:
            self.assertEqual(payload, f.read())
        self.assertIn("classic", send.stderr())

    def test_keepalives_feed_the_classic_peer(self):
        recv, port, out = self._dlrecv_listening("--proto", "classic", "--close-ends", "--keepalive", "100ms", "-t", "5s")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.settimeout(dltest.t(5))
            got = b""
            while len(got) < 31:
                b = s.recv(31 - len(got))
                self.assertTrue(b, "closed before a keepalive arrived")
                got += b
            self.assertEqual(parse_classic(got), [(b"", 1.0)])
            s.sendall(golden("worked_example.bin"))
        self.assertExited(recv, 20, code=0)
        with open(out, "rb") as f:
            self.assertEqual(parse_records(f.read()), [(b"ABC", 123.45)])

    def test_absurd_length_is_refused_cleanly(self):
        recv, port, out = self._dlrecv_listening("--proto", "classic", "--keep-open")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b" " * 5 + struct.pack("<qd", 1 << 62, 1.0) + b"!" * 5 + b"xx")
            s.settimeout(dltest.t(10))
            self.assertEqual(s.recv(1), b"")              # dropped, not waiting for 4 EiB
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(golden("worked_example.bin"))   # and still serving
        dltest.wait_until(lambda: os.path.getsize(out) > 0, 10, "message after refusal")
        recv.signal(2)
        self.assertExited(recv, 10)
        self.assertIn("too-large", recv.stderr())
        with open(out, "rb") as f:
            self.assertEqual(parse_records(f.read()), [(b"ABC", 123.45)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
