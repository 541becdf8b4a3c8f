#!/usr/bin/env python3
"""Splits `strace -f -tt -T` traces of cold starts (scripts/trace-coldstart)
into phases by the system calls that mark them, and prints each phase's
median over the traces, in ms:

- exec + dynamic loading: execve -> Rust's start-up (`poll` on fds 0-2)
- std start-up -> runtime: -> the async runtime's `epoll_create1`
- async runtime: -> the last thread it starts (none: current-thread)
- to the AWS configuration's first file (`~/.aws/...`): logging, config
- AWS configuration and clients: -> the first `/next` (TLS roots, if read
  at init, are shown apart)
- first invocation: the event read -> the response written, split into the
  time spent waiting for moto (write of a request -> its answer read) and
  the rest (the process's own work, TLS roots read during it shown apart).

Usage: scripts/coldstart_phases.py TRACE...
"""

import re
import statistics
import sys

LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^(?:<\.\.\. )?(\w+)[( ]")
FD = re.compile(r"^(?:<\.\.\. )?\w+\((\d+)")
TRUST_FILES = re.compile(r'"/(etc/ssl|etc/pki|usr/lib/ssl|usr/share/ca-certificates)[^"]*"')


def parse(path):
    """(pid, seconds, call, text) for every line, resumed calls joined."""
    out = []
    for raw in open(path, errors="replace"):
        m = LINE.match(raw)
        if not m:
            continue
        pid, h, mi, s, text = m.groups()
        t = int(h) * 3600 + int(mi) * 60 + float(s)
        c = CALL.match(text)
        out.append((int(pid), t, c.group(1) if c else "?", text))
    return out


def first(lines, pred, after=0.0):
    return next((l for l in lines if l[1] >= after and pred(l)), None)


def trust_reads(lines, start, end):
    """Time from the first to the last system call on the trust store."""
    hits = [l[1] for l in lines if start <= l[1] <= end and TRUST_FILES.search(l[3])]
    return (hits[-1] - hits[0]) if hits else 0.0


def moto_waits(lines, start, end, port):
    """Time between a request written to moto and its answer read (threads
    share descriptors: keyed by descriptor; a call another thread's line
    interrupted is completed by its `resumed` line)."""
    moto_fds, waiting, pending, total = set(), {}, {}, 0.0
    for pid, t, call, text in lines:
        if not start <= t <= end:
            continue
        fd = FD.match(text)
        key = fd.group(1) if fd else None
        if text.startswith("<... "):
            call, key = pending.pop(pid, (call, None))
        elif "<unfinished ...>" in text:
            pending[pid] = (call, key)
            if call not in ("write", "sendto", "writev"):
                continue
        if call == "connect" and f"sin_port=htons({port})" in text:
            moto_fds.add(key)
        elif call == "close" and key in moto_fds:
            moto_fds.discard(key)
        if key in moto_fds and call in ("write", "sendto", "writev"):
            waiting.setdefault(key, t)
        if key in moto_fds and call in ("read", "recvfrom") and "= -1" not in text \
                and key in waiting:
            total += t - waiting.pop(key)
    return total


def phases(path, port):
    lines = parse(path)
    exec_ = first(lines, lambda l: l[2] == "execve")[1]
    std = first(lines, lambda l: l[2] == "poll")[1]
    rt = first(lines, lambda l: l[2] == "epoll_create1")[1]
    nxt = first(lines, lambda l: "invocation/next" in l[3] and l[2] in ("write", "sendto", "writev"))[1]
    threads = [l[1] for l in lines if l[2] in ("clone", "clone3") and rt <= l[1] <= nxt]
    # A current-thread runtime starts no thread: it is ready at once.
    rt_end = max(threads[: runtime_threads(lines, rt)] or [rt])
    aws = first(lines, lambda l: ".aws/" in l[3], after=rt) or (0, nxt)
    aws = aws[1]
    event = first(lines, lambda l: "Lambda-Runtime-Aws-Request-Id" in l[3] or "lambda-runtime-aws-request-id" in l[3], after=nxt)[1]
    resp = first(lines, lambda l: "/response" in l[3] and l[2] in ("write", "sendto", "writev"), after=event)[1]
    roots_init = trust_reads(lines, rt, nxt)
    roots_first = trust_reads(lines, event, resp)
    waits = moto_waits(lines, event, resp, port)
    ms = 1e3
    return {
        "exec + dynamic loading": (std - exec_) * ms,
        "std start-up": (rt - std) * ms,
        "async runtime (epoll, worker threads)": (rt_end - rt) * ms,
        "logging + config (-> first ~/.aws read)": (aws - rt_end) * ms,
        "AWS config + clients (-> first /next), TLS roots apart": (nxt - aws - roots_init) * ms,
        "TLS roots read at init": roots_init * ms,
        "init (exec -> first /next)": (nxt - exec_) * ms,
        "first invocation (event read -> response written)": (resp - event) * ms,
        "  of which waiting for moto (round trips)": waits * ms,
        "  of which TLS roots read": roots_first * ms,
        "  of which the rest (own work)": (resp - event - waits - roots_first) * ms,
    }


def runtime_threads(lines, rt):
    """The runtime's worker threads are started together, right after
    `epoll_create1`: count the clones before the first file or socket."""
    n = 0
    for pid, t, call, text in lines:
        if t < rt:
            continue
        if call in ("clone", "clone3"):
            n += 1
        elif call in ("openat", "socket", "connect"):
            break
    return n


def main():
    import os
    url = os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        sys.exit("AWS_ENDPOINT_URL (moto's address) is not set: run scripts/trace-coldstart")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    rows = [phases(p, port) for p in sys.argv[1:]]
    print(f"{len(rows)} traces, medians in ms (strace adds its own overhead to every system call)\n")
    print("| phase | ms (median) | min | max |")
    print("|---|---|---|---|")
    for key in rows[0]:
        vals = [r[key] for r in rows]
        print(f"| {key} | {statistics.median(vals):.2f} | {min(vals):.2f} | {max(vals):.2f} |")


if __name__ == "__main__":
    main()
