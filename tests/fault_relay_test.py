#!/usr/bin/python3
"""Self-test of fault_relay.FaultRelay against a plain threaded echo server."""

import os
import socket
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fault_relay import FaultRelay  # noqa: E402

TIMEOUT = 20.0


class EchoServer:
    """Echoes every connection; records what each connection received and how it ended."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = []   # one bytearray per connection, in accept order
        self.endings = []    # "eof" / "reset" / other error text, per connection
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                idx = len(self.received)
                self.received.append(bytearray())
                self.endings.append(None)
            t = threading.Thread(target=self._serve, args=(c, idx), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c, idx):
        c.settimeout(TIMEOUT)
        end = "eof"
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self.lock:
                    self.received[idx] += d
                c.sendall(d)
        except ConnectionResetError:
            end = "reset"
        except OSError as e:
            end = "error: %s" % e
        finally:
            c.close()
            with self.done:
                self.endings[idx] = end
                self.done.notify_all()

    def wait_ended(self, idx, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.done:
            while len(self.endings) <= idx or self.endings[idx] is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("echo connection %d did not end" % idx)
                self.done.wait(left)
            return self.endings[idx]

    def close(self):
        self.sock.close()


def exchange(port, data, chunk=1 << 20):
    """Send data through port (writer thread), read until EOF/reset. Returns (echoed, ending)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    got = bytearray()
    ending = ["eof"]

    def writer():
        try:
            for i in range(0, len(data), chunk):
                s.sendall(data[i:i + chunk])
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        while True:
            d = s.recv(1 << 18)
            if not d:
                break
            got += d
    except ConnectionResetError:
        ending[0] = "reset"
    t.join(TIMEOUT)
    s.close()
    return bytes(got), ending[0]


class FaultRelayTest(unittest.TestCase):
    def setUp(self):
        self.echo = EchoServer()
        self.relay = FaultRelay(("127.0.0.1", self.echo.port))

    def tearDown(self):
        self.relay.close()
        self.echo.close()

    def test_plain_forwarding_is_exact(self):
        data = os.urandom(24 << 20)
        got, ending = exchange(self.relay.port, data)
        self.assertEqual(ending, "eof")
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, "echoed bytes differ")
        self.assertEqual(self.echo.wait_ended(0), "eof")
        self.relay.wait_for(lambda r: r.bytes_down == len(data), 5, "bytes_down")
        self.assertEqual(self.relay.bytes_up, len(data))
        self.assertEqual(self.relay.connections, 1)
        self.relay.wait_for(lambda r: r.live == 0, 5, "pair closed")

    def test_small_messages_and_half_close(self):
        s = socket.create_connection(("127.0.0.1", self.relay.port), timeout=TIMEOUT)
        for i in range(200):
            msg = b"message %d\n" % i
            s.sendall(msg)
            buf = b""
            while len(buf) < len(msg):
                buf += s.recv(100)
            self.assertEqual(buf, msg)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(s.recv(10), b"")
        s.close()

    def test_cut_after_is_byte_exact_and_resets(self):
        n = 3_000_001
        self.relay.cut_after(n)
        data = os.urandom(8 << 20)
        got, ending = exchange(self.relay.port, data)
        # The client's writer may consume the RST (EPIPE/ECONNRESET on send): its reader then
        # sees a plain EOF. Either way the stream stopped short.
        self.assertIn(ending, ("reset", "eof"))
        self.assertLess(len(got), len(data))
        self.assertEqual(self.echo.wait_ended(0), "reset")
        # The relay forwards exactly n bytes before the RST, but an RST makes the peer's kernel
        # drop whatever it had not read yet: the target sees a prefix of those n bytes.
        self.assertLessEqual(len(self.echo.received[0]), n)
        self.assertTrue(data[:n].startswith(bytes(self.echo.received[0])))
        self.assertTrue(data.startswith(got))
        self.assertEqual(self.relay.cuts, 1)
        self.assertEqual(self.relay.bytes_up, n)
        self.relay.wait_for(lambda r: r.live == 0, 5, "pair closed")
        # re-arm: the next connection is cut at its own count; a third one is untouched
        self.relay.cut_after(12345)
        got2, ending2 = exchange(self.relay.port, data[:1 << 20])
        self.assertIn(ending2, ("reset", "eof"))
        self.assertLess(len(got2), 1 << 20)
        self.assertEqual(self.echo.wait_ended(1), "reset")
        self.assertTrue(data[:12345].startswith(bytes(self.echo.received[1])))
        self.assertEqual(self.relay.bytes_up, n + 12345)
        got3, ending3 = exchange(self.relay.port, data[:1 << 20])
        self.assertEqual((ending3, got3 == data[:1 << 20]), ("eof", True))
        self.assertEqual(self.relay.connections, 3)
        self.assertEqual(self.relay.cuts, 2)

    def test_cut_after_down(self):
        n = 777_777
        self.relay.cut_after(n, direction="down")
        data = os.urandom(4 << 20)
        got, ending = exchange(self.relay.port, data)
        self.assertIn(ending, ("reset", "eof"))
        self.assertLessEqual(len(got), n)
        self.assertTrue(data[:n].startswith(got))
        self.assertEqual(self.relay.bytes_down, n)

    def test_cut_after_zero(self):
        self.relay.cut_after(0)
        got, ending = exchange(self.relay.port, b"hello")
        self.assertEqual((got, ending), (b"", "reset"))
        self.assertEqual(self.echo.wait_ended(0), "reset")
        self.assertEqual(bytes(self.echo.received[0]), b"")

    def test_corrupt_after_flips_exactly_one_byte(self):
        for direction, n in (("up", 5_000_000), ("down", 123)):
            with self.subTest(direction=direction):
                before = self.relay.corruptions
                self.relay.corrupt_after(n, direction=direction)
                data = os.urandom(8 << 20)
                got, ending = exchange(self.relay.port, data)
                self.assertEqual(ending, "eof")
                self.assertEqual(len(got), len(data))
                want = bytearray(data)
                want[n] ^= 0xFF
                diff = [i for i in range(0, len(data), 1 << 16)
                        if got[i:i + (1 << 16)] != want[i:i + (1 << 16)]]
                self.assertEqual(diff, [], "unexpected differences")
                self.assertNotEqual(got[n], data[n])
                self.assertEqual(self.relay.corruptions, before + 1)

    def test_corrupt_then_cut_queue(self):
        # faults of one direction fire in order, each counting from the previous one
        self.relay.corrupt_after(10)
        self.relay.cut_after(100)   # counted from the byte after the flipped one
        data = bytes(range(256)) * 8
        got, ending = exchange(self.relay.port, data)
        self.assertIn(ending, ("reset", "eof"))
        self.echo.wait_ended(0)
        want = bytearray(data[:111])
        want[10] ^= 0xFF
        self.assertTrue(bytes(want).startswith(bytes(self.echo.received[0])))
        self.assertEqual(self.relay.bytes_up, 111)
        self.assertEqual(self.relay.corruptions, 1)

    def test_cut_all(self):
        socks = [socket.create_connection(("127.0.0.1", self.relay.port), timeout=TIMEOUT)
                 for _ in range(3)]
        for s in socks:
            s.sendall(b"ping")
            self.assertEqual(s.recv(4), b"ping")
        self.relay.wait_for(lambda r: r.live == 3, 5, "3 live pairs")
        self.relay.cut_all()
        self.assertEqual(self.relay.live, 0)
        for s in socks:
            with self.assertRaises((ConnectionResetError, BrokenPipeError)):
                d = s.recv(10)
                if d == b"":
                    raise AssertionError("orderly EOF, expected RST")
            s.close()
        for i in range(3):
            self.assertEqual(self.echo.wait_ended(i), "reset")
        self.assertEqual(self.relay.cuts, 3)

    def test_pause_and_resume(self):
        s = socket.create_connection(("127.0.0.1", self.relay.port), timeout=TIMEOUT)
        s.sendall(b"a")
        self.assertEqual(s.recv(1), b"a")
        self.relay.pause(True)
        s.sendall(b"bcd")
        s.settimeout(0.3)   # negative check: nothing may come back while paused
        with self.assertRaises(socket.timeout):
            s.recv(10)
        # a new connection is not accepted by the relay while paused
        s2 = socket.create_connection(("127.0.0.1", self.relay.port), timeout=TIMEOUT)
        s2.sendall(b"xyz")
        self.assertEqual(self.relay.connections, 1)
        self.relay.pause(False)
        s.settimeout(TIMEOUT)
        s2.settimeout(TIMEOUT)
        buf = b""
        while len(buf) < 3:
            buf += s.recv(10)
        self.assertEqual(buf, b"bcd")
        buf = b""
        while len(buf) < 3:
            buf += s2.recv(10)
        self.assertEqual(buf, b"xyz")
        self.relay.wait_connections(2, 5)
        s.close()
        s2.close()

    def test_target_down_resets_client(self):
        self.echo.close()
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
        dead.close()
        r = FaultRelay(("127.0.0.1", port))
        try:
            # the RST may even beat connect()'s return
            with self.assertRaises((ConnectionResetError, BrokenPipeError)):
                s = socket.create_connection(("127.0.0.1", r.port), timeout=TIMEOUT)
                try:
                    if s.recv(1) == b"":
                        raise AssertionError("orderly EOF, expected RST")
                finally:
                    s.close()
            r.wait_for(lambda x: x.failed_connects == 1, 5, "failed connect")
        finally:
            r.close()


if __name__ == "__main__":
    unittest.main()
