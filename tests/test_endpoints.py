#!/usr/bin/python3
"""Endpoints as users type them: what a listener does with a file that is in the way of its
unix socket (issue 7 item 2), and the one-line messages for malformed endpoints and the way
peers are named (issue 7 item 18)."""

import os
import socket
import stat
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dltest  # noqa: E402


def wait_listening(proc):
    """Waits for -v's "listening on" line (probing the socket would itself be a client)."""
    dltest.wait_until(lambda: "listening on" in proc.stderr() or not proc.running, 10,
                      "%s listening" % proc.name)


class UnixPathTest(dltest.DlTestCase):

    def _refused(self, path, what):
        p = self.run_tool("dlrecv", "-l", "unix:" + path, "-o", self.path("out"), timeout=10)
        self.assertEqual(p.returncode, dltest.EXIT_CONNECT, p.describe())
        self.assertOneLineError(p, "dlrecv", "unix:" + path, what + " is in the way")

    def test_regular_file_is_left_intact(self):
        path = self.sock_path("precious")
        with open(path, "wb") as f:
            f.write(b"do not delete me\n")
        self._refused(path, "a regular file")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"do not delete me\n")

    def test_symlink_is_left_intact(self):
        target = self.sock_path("target")
        with open(target, "wb") as f:
            f.write(b"target\n")
        path = self.sock_path("link")
        os.symlink(target, path)
        self._refused(path, "a symbolic link")
        self.assertTrue(os.path.islink(path))
        self.assertEqual(os.readlink(path), target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"target\n")

    def test_directory_is_left_intact(self):
        path = self.sock_path("dir")
        os.mkdir(path)
        self._refused(path, "a directory")
        self.assertTrue(os.path.isdir(path))

    def test_stale_socket_is_replaced_and_removed_at_exit(self):
        path = self.sock_path("stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)        # bound, never listening: what a crashed listener leaves
        s.close()
        r = self.dlrecv("-v", "-l", "unix:" + path, "-o", self.path("out"))
        wait_listening(r)
        snd = self.dlsend("unix:" + path, stdin=subprocess.PIPE)
        snd.popen.stdin.write(b"hello\n")
        snd.popen.stdin.close()
        self.assertExitCodes(20, (snd, 0), (r, 0))
        with open(self.path("out"), "rb") as f:
            self.assertEqual(f.read(), b"hello\n")
        self.assertFalse(os.path.exists(path), "socket file left behind")

    def test_live_socket_is_not_taken_over(self):
        path = self.sock_path("live.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        self.addCleanup(s.close)
        p = self.run_tool("dlrecv", "-l", "unix:" + path, timeout=10)
        self.assertEqual(p.returncode, dltest.EXIT_CONNECT, p.describe())
        self.assertOneLineError(p, "dlrecv", "another process is listening")
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))


class MessageTest(dltest.DlTestCase):

    def _usage(self, tool, *args, needles=(), absent=()):
        p = self.run_tool(tool, *args, timeout=10, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, dltest.EXIT_USAGE, p.describe())
        self.assertOneLineError(p, tool, *needles)
        for a in absent:
            self.assertNotIn(a, p.stderr(), p.describe())
        return p

    def test_lone_colon(self):
        self._usage("dlsend", ":", needles=("endpoint ':'", "empty host and port"),
                    absent=("dlsend: ::",))

    def test_url_scheme(self):
        self._usage("dlsend", "tcp://127.0.0.1:1", needles=("scheme 'tcp://' is not supported",),
                    absent=("brackets",))

    def test_empty_listen_endpoint(self):
        self._usage("dlrecv", "-l", "", needles=("listen endpoint ''", "empty"))

    def test_brackets_hold_ipv6_only(self):
        self._usage("dlsend", "[127.0.0.1]:9", needles=("brackets are for IPv6",))
        self._usage("dlsend", "[zz]:9", needles=("'zz' is not an IPv6 address",))
        self._usage("dlrecv", "-l", "[zz]:0", needles=("'zz' is not an IPv6 address",))

    def test_ipv4_peer_of_dual_stack_listener(self):
        r, port = self.listen("dlrecv", "-v", "-o", self.path("out"))
        snd = self.dlsend("127.0.0.1:%d" % port, stdin=subprocess.PIPE)
        snd.popen.stdin.write(b"x")
        snd.popen.stdin.close()
        self.assertExitCodes(20, (snd, 0), (r, 0))
        self.assertIn("connected to 127.0.0.1:", r.stderr(), r.describe())
        self.assertNotIn("::ffff:", r.stderr(), r.describe())

    def test_unix_peer_is_named(self):
        path = self.sock_path("named.sock")
        r = self.dlrecv("-v", "-l", "unix:" + path, "-o", self.path("out"))
        wait_listening(r)
        snd = self.dlsend("unix:" + path, stdin=subprocess.PIPE)
        snd.popen.stdin.write(b"x")
        snd.popen.stdin.close()
        self.assertExitCodes(20, (snd, 0), (r, 0))
        self.assertIn("connected to unix:%s (pid %d)" % (path, snd.popen.pid), r.stderr(),
                      r.describe())


if __name__ == "__main__":
    dltest.main()
