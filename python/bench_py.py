#!/usr/bin/python3
"""Throughput of the Python binding: a Python sender process -> a Python receiver process over
loopback (default 2 GiB in 1 MiB messages), printed in Gbit/s; optionally the same amount
through the tools (`head -c N /dev/zero | dlsend | dlrecv > /dev/null`) for comparison.

    bazel build //lib/api:libdatalink.so //tools/...
    /usr/bin/python3 python/bench_py.py [--total 2G] [--size 1M] [--read bytes|into|numpy] [--tools]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def size_arg(text):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in mult:
        return int(float(text[:-1]) * mult[text[-1].upper()])
    return int(text)


def receiver(args):
    from datalink import Datalink
    link = Datalink(listen="127.0.0.1:0", close_timeout=10)
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d\n" % link.port)
    os.rename(args.port_file + ".tmp", args.port_file)
    total = count = 0
    start = None
    buf = bytearray(args.size)
    np = None
    if args.read == "numpy":
        import numpy as np
    while True:
        if args.read == "into":
            r = link.read_into(buf, timeout=60)
            n = r[0] if r else None
        elif args.read == "numpy":
            r = link.read_np((args.size,), np.uint8, timeout=60)
            n = r[0].nbytes if r else None
        else:
            r = link.read(timeout=60)
            n = r[1] if r else None
        if n is None:
            break
        if start is None:
            start = time.monotonic()
        total += n
        count += 1
    end = time.monotonic()
    link.close()
    secs = end - (start or end)
    print("received %d bytes in %d messages, %.3f s, %.2f Gbit/s (read=%s)"
          % (total, count, secs, total * 8 / secs / 1e9 if secs else 0, args.read), flush=True)


def sender(args):
    from datalink import Datalink
    link = Datalink("127.0.0.1", args.port, close_timeout=30)
    payload = bytes(args.size)
    n = args.total // args.size
    t0 = time.monotonic()
    for _ in range(n):
        link.write(payload)
    link.close()
    secs = time.monotonic() - t0
    print("sent %d bytes in %d messages, %.3f s, %.2f Gbit/s" % (n * args.size, n, secs, n * args.size * 8 / secs / 1e9),
          flush=True)


def wait_port(path, proc):
    for _ in range(1000):
        if os.path.exists(path):
            return int(open(path).read())
        if proc.poll() is not None:
            raise SystemExit("receiver exited")
        time.sleep(0.01)
    raise SystemExit("no port file")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("role", nargs="?", default="bench", choices=["bench", "send", "recv"])
    p.add_argument("--total", type=size_arg, default=2 << 30)
    p.add_argument("--size", type=size_arg, default=1 << 20)
    p.add_argument("--read", default="into", choices=["into", "bytes", "numpy"])
    p.add_argument("--port", type=int)
    p.add_argument("--port-file")
    p.add_argument("--tools", action="store_true", help="also time dlsend | dlrecv")
    args = p.parse_args()
    if args.role == "recv":
        return receiver(args)
    if args.role == "send":
        return sender(args)
    me = [sys.executable, os.path.abspath(__file__), "--total", str(args.total), "--size", str(args.size)]
    with tempfile.TemporaryDirectory() as tmp:
        pf = os.path.join(tmp, "port")
        recv = subprocess.Popen(me + ["recv", "--port-file", pf, "--read", args.read])
        send = None
        try:
            port = wait_port(pf, recv)
            t0 = time.monotonic()
            send = subprocess.Popen(me + ["send", "--port", str(port)])
            send.wait(600)
            recv.wait(600)
            secs = time.monotonic() - t0
            print("python -> python, end to end: %.2f Gbit/s (%.3f s)" % (args.total * 8 / secs / 1e9, secs))
        finally:
            for proc in (send, recv):
                if proc and proc.poll() is None:
                    proc.kill()
        if args.tools:
            dlsend = os.path.join(REPO, "bazel-bin/tools/dlsend/dlsend")
            dlrecv = os.path.join(REPO, "bazel-bin/tools/dlrecv/dlrecv")
            pf2 = os.path.join(tmp, "port2")
            recv = subprocess.Popen([dlrecv, "-l", "127.0.0.1:0", "--port-file", pf2], stdout=subprocess.DEVNULL)
            try:
                port = wait_port(pf2, recv)
                t0 = time.monotonic()
                subprocess.run("head -c %d /dev/zero | %s 127.0.0.1:%d" % (args.total, dlsend, port), shell=True,
                               check=True, timeout=600)
                recv.wait(600)
                secs = time.monotonic() - t0
                print("head | dlsend | dlrecv > /dev/null: %.2f Gbit/s (%.3f s)" % (args.total * 8 / secs / 1e9, secs))
            finally:
                if recv.poll() is None:
                    recv.kill()


if __name__ == "__main__":
    main()
