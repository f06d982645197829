#!/usr/bin/python3
"""Shared helpers for the dlsend/dlrecv black-box tests (stdlib only, Debian's /usr/bin/python3).

Binaries: $DLSEND / $DLRECV if set (run_py_test.sh sets them from Bazel's $(location ...)),
else <repo>/bazel-bin/tools/dlsend/dlsend and <repo>/bazel-bin/tools/dlrecv/dlrecv, where <repo>
is the parent of this file's directory. Works from the repo root and from Bazel's runfiles root.

Process discipline: every child is started through a Procs group (a context manager, also
registered as a TestCase cleanup by DlTestCase.procs()), every wait has a timeout, and whatever is
still running when the group closes is SIGKILLed and reaped. Each child is reaped by its own
thread with os.wait4(), which also yields its rusage (ru_maxrss in KiB = peak RSS).
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 1 << 20
GiB = 1 << 30

# Multiply every timeout by this (slow machines, sanitizer builds).
SCALE = float(os.environ.get("DLTEST_TIMEOUT_SCALE", "1"))

EXIT_OK, EXIT_IO, EXIT_USAGE, EXIT_RESOLVE, EXIT_CONNECT = 0, 1, 2, 3, 4
EXIT_DISCONNECTED, EXIT_PROTOCOL, EXIT_TIMEOUT, EXIT_TOO_LARGE, EXIT_INTERRUPTED = 5, 6, 7, 8, 130


def t(seconds):
    """A timeout, scaled."""
    return seconds * SCALE


# ----------------------------------------------------------------------------- binaries
def _find_binary(name):
    env = os.environ.get(name.upper())
    if env:
        return os.path.abspath(env)
    for cand in (os.path.join(REPO, "bazel-bin", "tools", name, name),   # by hand, repo root
                 os.path.join(REPO, "tools", name, name)):              # Bazel runfiles layout
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return os.path.join(REPO, "bazel-bin", "tools", name, name)


def tool_path(name):
    """Any tool of the family: $NAME (upper case) or the build tree / runfiles location."""
    return _find_binary(name)


def dlsend_path():
    return _find_binary("dlsend")


def dlrecv_path():
    return _find_binary("dlrecv")


def dlping_path():
    return _find_binary("dlping")


def binaries_missing():
    """Return a message if a binary is missing, else None."""
    missing = [p for p in (dlsend_path(), dlrecv_path())
               if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        return ("binaries not built: %s (build with `bazel build //tools/...` or set "
                "DLSEND/DLRECV)" % ", ".join(missing))
    return None


# ----------------------------------------------------------------------------- files & data
def tmp_base():
    return os.environ.get("TEST_TMPDIR") or tempfile.gettempdir()


def make_random_file(path, size, block=MiB):
    """Write size random bytes to path (os.urandom, 1 MiB blocks). Returns the sha256 hex."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = os.urandom(min(block, left))
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def pattern_blocks(size, block=MiB, seed=None):
    """Fast deterministic non-repeating data: one random block, each copy stamped with its
    index in the first 8 bytes. Yields bytes objects whose total length is size."""
    base = os.urandom(block) if seed is None else hashlib.sha256(seed).digest() * (block // 32)
    i = 0
    left = size
    while left > 0:
        b = i.to_bytes(8, "little") + base[8:]
        if left < len(b):
            b = b[:left]
        yield b
        left -= len(b)
        i += 1


def first_difference(path_a, path_b):
    """Describe where two files first differ (for failure messages)."""
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        off = 0
        while True:
            x, y = a.read(MiB), b.read(MiB)
            if x != y:
                n = min(len(x), len(y))
                i = next((k for k in range(n) if x[k] != y[k]), n)
                return "first difference at byte %d (sizes %d vs %d)" % (
                    off + i, os.path.getsize(path_a), os.path.getsize(path_b))
            if not x:
                return "identical"
            off += len(x)


# ----------------------------------------------------------------------------- ports
def reserved_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port that was free a moment ago (bound to 0 then closed). Nothing listens on it."""
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def private_loopback():
    """A random address in 127.0.0.0/8 other than 127.0.0.1. A test whose dialer starts before
    its listener uses one, so that a stray dialer from another test (which targets 127.0.0.1)
    can never reach this test's listener on a reused port number."""
    import random
    return "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255), random.randint(1, 254))


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
            return True
        finally:
            s.close()
    except OSError:
        return False


# ----------------------------------------------------------------------------- processes
# Peak RSS. os.wait4()'s ru_maxrss for a child we spawn directly is useless here: Python starts
# children with vfork (or fork), and at execve() Linux folds the OLD address space's high-water
# mark into the process's maxrss (exec_mmap -> setmax_mm_hiwater_rss). So a child of this test
# process reports at least the test process's own peak RSS (checked: /bin/true spawned by a Python
# holding 400 MiB reports 420220 KiB). The launcher below is a small fresh Python that fork()s the
# tool, forwards signals to it, reaps it with os.wait4() and writes ru_maxrss (KiB) to a file;
# the tool's figure then has a floor of only the launcher's few MiB.
_RSS_LAUNCHER = r"""
import ctypes, os, signal, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
def fwd(sig, frame):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
          signal.SIGPIPE):
    signal.signal(s, fwd)
_, status, ru = os.wait4(pid, 0)
with open(out + ".tmp", "w") as f:
    f.write("%d\n" % ru.ru_maxrss)
os.rename(out + ".tmp", out)
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
os._exit(code & 0xFF)
"""


class Proc:
    """A child process reaped by its own thread via os.wait4 (gives exit status and rusage)."""

    def __init__(self, popen, name, stderr_path, rss_path=None):
        self.rss_path = rss_path   # set when started with measure_rss=True
        self.popen = popen
        self.pid = popen.pid
        self.name = name
        self.args = popen.args
        self.stderr_path = stderr_path
        self.returncode = None
        self.rusage = None
        self._done = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="reap:%s" % name, daemon=True)
        self._reaper.start()

    def _reap(self):
        while True:
            try:
                _, status, ru = os.wait4(self.pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status, ru = 255 << 8, None
                break
        self.rusage = ru
        self.returncode = os.waitstatus_to_exitcode(status)
        # Tell Popen the child is gone so it never waits for (or signals) a recycled pid.
        self.popen.returncode = self.returncode
        self._done.set()

    @property
    def running(self):
        return not self._done.is_set()

    @property
    def maxrss_kib(self):
        """Peak RSS in KiB (after exit). Exact only for processes started with measure_rss=True;
        otherwise it includes the test process's own peak (see _RSS_LAUNCHER)."""
        if self.rss_path:
            try:
                with open(self.rss_path) as f:
                    return int(f.read())
            except (FileNotFoundError, ValueError):
                return None
        return self.rusage.ru_maxrss if self.rusage else None

    def wait(self, timeout):
        """Wait up to timeout seconds; return the exit code (negative = signal) or None."""
        self._done.wait(timeout)
        return self.returncode

    def signal(self, sig):
        if self.running:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)

    def stderr(self):
        if not self.stderr_path:
            return ""
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe(self):
        return "%s: %s\n  exit=%s\n  stderr=%s" % (
            self.name, " ".join(map(str, self.args)), self.returncode,
            _indent(self.stderr()[-3000:]))


def _indent(s):
    s = s.rstrip("\n")
    return ("\n    " + s.replace("\n", "\n    ")) if s else "(empty)"


class Procs:
    """A group of child processes; closing it kills (SIGKILL) and reaps whatever still runs."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []
        self._files = []
        self._n = 0

    def start(self, args, name=None, stdin=None, stdout=None, stderr=None, env=None, cwd=None,
              measure_rss=False):
        """Start args. stdin/stdout: None (DEVNULL), a path (str), subprocess.PIPE, a file
        object or fd. stderr: None means a file in workdir (read with proc.stderr()).
        measure_rss: run through _RSS_LAUNCHER so that proc.maxrss_kib is the tool's own peak
        (signals sent to the proc are forwarded to the tool; exit status is passed through)."""
        self._n += 1
        name = name or "%s#%d" % (os.path.basename(str(args[0])), self._n)
        rss_path = None
        if measure_rss:
            rss_path = os.path.join(self.workdir, "%s.maxrss" % name.replace("/", "_"))
            args = ["/usr/bin/python3", "-S", "-c", _RSS_LAUNCHER, rss_path] + list(args)

        def _open(x, mode):
            if x is None:
                return subprocess.DEVNULL
            if isinstance(x, str):
                f = open(x, mode)
                self._files.append(f)
                return f
            return x

        stderr_path = None
        if stderr is None:
            stderr_path = os.path.join(self.workdir, "%s.stderr" % name.replace("/", "_"))
            err = open(stderr_path, "wb")
            self._files.append(err)
        else:
            err = stderr
        p = subprocess.Popen([str(a) for a in args], stdin=_open(stdin, "rb"),
                             stdout=_open(stdout, "wb"), stderr=err, env=env, cwd=cwd,
                             close_fds=True)
        proc = Proc(p, name, stderr_path, rss_path)
        self.procs.append(proc)
        return proc

    def kill_all(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(10)
            for f in (p.popen.stdin, p.popen.stdout):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill_all()

    def describe(self):
        return "\n".join(p.describe() for p in self.procs)


def wait_port_file(path, proc=None, timeout=10.0):
    """Poll (bounded) for a --port-file: digits followed by a newline. Fails early if proc dies."""
    deadline = time.monotonic() + t(timeout)
    delay = 0.002
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data.endswith(b"\n") and data.strip().isdigit():
                return int(data)
        except FileNotFoundError:
            pass
        if proc is not None and not proc.running:
            raise AssertionError("%s exited before writing --port-file %s\n%s"
                                 % (proc.name, path, proc.describe()))
        if time.monotonic() > deadline:
            raise AssertionError("no port in --port-file %s after %.1fs%s" % (
                path, t(timeout), ("\n" + proc.describe()) if proc else ""))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_until(predicate, timeout, what, interval=0.01):
    """Poll predicate() (bounded, short waits). Returns its value or raises AssertionError."""
    deadline = time.monotonic() + t(timeout)
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (t(timeout), what))
        time.sleep(interval)


def cpu_seconds(pid):
    """User + system CPU time a running process has used so far (seconds)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_rss_kib(pid):
    """A running process's resident set size now (KiB), or None."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class UdpRelay(threading.Thread):
    """Forwards datagrams between one client (whoever last sent to `port`) and `target`.
    Subclasses decide what each client datagram becomes (client_datagram: the list to
    forward) and may send more on their own (tick, every 20 ms at most, via self.back);
    they call start() at the end of their __init__."""

    def __init__(self, target, rcvbuf=None):
        super().__init__(daemon=True)
        self.target = target
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(target)
        if rcvbuf:
            for s in (self.front, self.back):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.client = None
        self.stop = False

    def client_datagram(self, data):
        return [data]

    def tick(self):
        pass

    def run(self):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.front, selectors.EVENT_READ)
        sel.register(self.back, selectors.EVENT_READ)
        while not self.stop:
            for key, _ in sel.select(0.02):
                try:
                    if key.fileobj is self.front:
                        data, self.client = self.front.recvfrom(65536)
                        for d in self.client_datagram(data):
                            self.back.send(d)
                    else:
                        data = self.back.recv(65536)
                        if self.client:
                            self.front.sendto(data, self.client)
                except OSError:
                    pass
            self.tick()

    def close(self):
        self.stop = True
        self.join(5)
        self.front.close()
        self.back.close()


class Feeder(threading.Thread):
    """Writes an iterable of byte blocks to a pipe (e.g. a child's stdin), then closes it.
    Keeps a sha256 and count of what was written. Broken pipes end it quietly (recorded)."""

    def __init__(self, pipe, blocks, close=True):
        super().__init__(daemon=True)
        self.pipe, self.blocks, self.close_at_end = pipe, blocks, close
        self.sha = hashlib.sha256()
        self.count = 0
        self.error = None

    def run(self):
        try:
            for b in self.blocks:
                self.pipe.write(b)
                self.sha.update(b)
                self.count += len(b)
            self.pipe.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            self.error = e
        finally:
            if self.close_at_end:
                try:
                    self.pipe.close()
                except OSError:
                    pass


class Drainer(threading.Thread):
    """Reads a pipe to EOF, hashing and counting (optionally keeping) the bytes."""

    def __init__(self, pipe, keep=False):
        super().__init__(daemon=True)
        self.pipe, self.keep = pipe, keep
        self.sha = hashlib.sha256()
        self.count = 0
        self.data = bytearray() if keep else None

    def run(self):
        try:
            while True:
                b = self.pipe.read1(MiB) if hasattr(self.pipe, "read1") else self.pipe.read(MiB)
                if not b:
                    break
                self.sha.update(b)
                self.count += len(b)
                if self.keep:
                    self.data += b
        except (OSError, ValueError):
            pass


# ----------------------------------------------------------------------------- TestCase base
class DlTestCase(unittest.TestCase):
    """Base class: a per-test temp dir, a Procs group killed at cleanup, binary paths."""

    need_binaries = True

    @classmethod
    def setUpClass(cls):
        if cls.need_binaries:
            msg = binaries_missing()
            if msg:
                if os.environ.get("DLTEST_SKIP_MISSING"):
                    raise unittest.SkipTest(msg)
                raise AssertionError(msg)
        cls.DLSEND = dlsend_path()
        cls.DLRECV = dlrecv_path()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="dltest-", dir=tmp_base())
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.P = Procs(self.dir)
        self.addCleanup(self.P.kill_all)   # runs before rmtree (cleanups are LIFO)

    def path(self, name):
        return os.path.join(self.dir, name)

    def sock_path(self, name):
        """A unix socket path short enough for sun_path (108 bytes): Bazel's TEST_TMPDIR is
        often too deep, so fall back to a fresh directory under /tmp."""
        p = self.path(name)
        if len(p.encode()) < 100:
            return p
        d = tempfile.mkdtemp(prefix="dl-")
        if len(d) + len(name) >= 100:
            d = tempfile.mkdtemp(prefix="dl-", dir="/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        return os.path.join(d, name)

    # -- starting the tools
    def dlsend(self, *args, **kw):
        return self.P.start([self.DLSEND] + list(args), name=kw.pop("name", None), **kw)

    def dlrecv(self, *args, **kw):
        return self.P.start([self.DLRECV] + list(args), name=kw.pop("name", None), **kw)

    def listen(self, tool, *args, port="0", **kw):
        """Start `tool -l PORT --port-file F ARGS`; return (proc, port) once it listens."""
        pf = self.path("port-%d" % len(self.P.procs))
        start = self.dlsend if tool == "dlsend" else self.dlrecv
        p = start("-l", str(port), "--port-file", pf, *args, **kw)
        return p, wait_port_file(pf, p)

    def run_tool(self, tool, *args, timeout=20, stdin=None):
        """Run a tool to completion. Returns the Proc (returncode, stderr())."""
        start = self.dlsend if tool == "dlsend" else self.dlrecv
        p = start(*args, stdin=stdin)
        self.assertExited(p, timeout)
        return p

    def feed(self, pipe, blocks, close, timeout=30):
        """Write blocks to pipe from a thread, waiting (bounded) until all are written."""
        f = Feeder(pipe, iter(blocks), close=close)
        f.start()
        f.join(t(timeout))
        if f.is_alive():
            self.fail("writing to a child's stdin did not finish within %.0fs (%d bytes "
                      "written)\n%s" % (t(timeout), f.count, self.P.describe()))
        if f.error:
            self.fail("writing to a child's stdin failed: %r\n%s" % (f.error, self.P.describe()))
        return f

    # -- assertions
    def assertExited(self, proc, timeout, code=None):
        rc = proc.wait(t(timeout))
        if rc is None:
            proc.kill()
            proc.wait(5)
            self.fail("%s did not exit within %.0fs (killed)\n%s"
                      % (proc.name, t(timeout), self.P.describe()))
        if code is not None and rc != code:
            self.fail("%s: expected exit %s, got %s\n%s"
                      % (proc.name, code, rc, self.P.describe()))
        return rc

    def assertExitCodes(self, timeout, *pairs):
        """pairs: (proc, code). Waits for all (shared deadline), then checks all codes."""
        deadline = time.monotonic() + t(timeout)
        for p, _ in pairs:
            p.wait(max(0.0, deadline - time.monotonic()))
        bad = [(p, c) for p, c in pairs if p.returncode != c]
        if bad:
            for p, _ in pairs:
                p.kill()
            for p, _ in pairs:
                p.wait(5)
            self.fail("unexpected exit codes: %s\n%s" % (
                ", ".join("%s expected %s got %s" % (p.name, c,
                          "TIMEOUT(killed)" if p.returncode in (None, -9) and c != -9
                          else p.returncode) for p, c in bad),
                self.P.describe()))

    def assertSameFile(self, expected_path, got_path):
        if sha256_file(expected_path) != sha256_file(got_path):
            self.fail("output differs from input: %s\n%s"
                      % (first_difference(expected_path, got_path), self.P.describe()))

    def assertNoCrash(self, proc):
        err = proc.stderr()
        for bad in ("Traceback", "terminate called", "Segmentation", "AddressSanitizer",
                    "runtime error", "Assertion", "core dumped"):
            self.assertNotIn(bad, err, "%s stderr shows a crash:\n%s" % (proc.name, err))

    def assertOneLineError(self, proc, prog, *needles):
        err = proc.stderr()
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines, "%s: expected an error on stderr, got nothing\n%s"
                        % (proc.name, proc.describe()))
        self.assertTrue(any(l.startswith(prog + ":") for l in lines),
                        "%s: no line starting with %r\n%s" % (proc.name, prog + ":",
                                                            proc.describe()))
        for n in needles:
            self.assertIn(n.lower(), err.lower(), "%s: %r not in stderr\n%s"
                          % (proc.name, n, proc.describe()))
        self.assertNoCrash(proc)


class SummaryRunner(unittest.TextTestRunner):
    """TextTestRunner that prints a plain 'N passed, N failed' line last (CI reads it)."""

    def run(self, test):
        result = super().run(test)
        failed = len(result.failures) + len(result.errors) + len(
            getattr(result, "unexpectedSuccesses", []))
        passed = max(0, result.testsRun - failed - len(result.skipped))
        self.stream.writeln("%d passed, %d failed%s" % (
            passed, failed, (", %d skipped" % len(result.skipped)) if result.skipped else ""))
        self.stream.flush()
        return result


def main():
    unittest.main(module="__main__", testRunner=SummaryRunner(verbosity=2))
