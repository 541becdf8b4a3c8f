#!/usr/bin/env python3
"""Sorts the CPU samples of cold starts (scripts/profile-coldstart: `perf
script` of `perf record -e task-clock -c 25000 --call-graph dwarf`, one file
per start) into start-up steps by the frames on each sample's stack, and
prints the CPU time per start of each step, for init (every sample before
the first one in the function's handler) and for the first invocation.

A sample counts for the first rule (top to bottom) one of whose patterns
appears in one of its frames: the specific steps (TLS roots, the crypto
provider, an SDK request) come before the ones that contain them.

Usage: scripts/coldstart_cpu.py PERF_SCRIPT_TXT...
"""

import re
import sys
from collections import Counter

PERIOD_MS = 0.025  # perf record -c 25000 (ns of task clock)
HANDLER = re.compile(
    r"\b(webhook|connections|authorize|callback|graph|refresh)::\w+::handle\b"
    r"|\bDeletionJob::handle|\bRefresher::run\b"
)
RULES = [
    ("TLS roots parsed into a root store", ["RootCertStore", "anchor_from_trusted_cert",
                                            "pem_slice_iter", "from_pem_slice", "rustls_pki_types::pem"]),
    ("TLS roots: the compiled-in PEM bundle written", ["shared::tls::pem_bundle"]),
    ("TLS roots: the system store read", ["rustls_native_certs", "openssl_probe"]),
    ("crypto provider (aws-lc) and rustls configuration", ["aws_lc", "CryptoProvider", "rustls::client::",
                                                           "rustls::crypto", "ClientConfig"]),
    ("reqwest client (Meta)", ["reqwest::async_impl::client::ClientBuilder::build"]),
    ("SDK request: endpoint resolution", ["resolve_endpoint", "endpoint_lib", "ResolveEndpoint"]),
    ("SDK request: signing", ["aws_sigv4", "SigV4Signer", "sign_http"]),
    ("SDK request: HTTP client / connector set-up", ["aws_smithy_http_client", "hyper_util::client"]),
    ("SDK request: the rest (orchestrator, (de)serialising)", ["aws_smithy_runtime::client::orchestrator",
                                                              "aws_sdk_"]),
    ("AWS config: profile files", ["aws_config::profile", "aws_runtime::env_config"]),
    ("AWS config: credential chain", ["DefaultCredentialsChain", "aws_config::default_provider::credentials",
                                      "aws_config::imds", "aws_config::ecs", "aws_config::web_identity"]),
    ("AWS config: region chain", ["aws_config::default_provider::region", "aws_config::meta::region"]),
    ("AWS config: the rest of the loader", ["aws_config::"]),
    ("SDK clients built (Client::new)", ["Client::new", "aws_sdk_"]),
    ("logging (tracing subscriber)", ["shared::logging", "tracing_subscriber"]),
    ("configuration (environment read and checked)", ["shared::config", "from_env", "FromEnv"]),
    ("async runtime built", ["tokio::runtime::builder"]),
    ("the secret read started at init (its own frames)", ["read_secrets_early"]),
    ("handler's own work (verify, parse, events)", ["::handle", "notification", "to_events",
                                                    "EventStore", "ConnectionStore"]),
    ("main: building the handler and the rest of main", ["::main"]),
    ("service code elsewhere", ["webhook::", "connections::", "authorize::",
                                                    "callback::", "graph::", "refresh::", "shared::"]),
    ("Lambda runtime loop and its HTTP client", ["lambda_runtime", "lambda_http", "hyper", "tower"]),
    ("async runtime (polling, timers, I/O)", ["tokio::"]),
    ("dynamic loading and relocation (ld.so)", ["_dl_", "dl_main", "ld-linux", "_dl_start"]),
    ("std start-up", ["std::rt::lang_start", "__libc_start_main", "main"]),
]


def samples(path):
    """(time, [frames]) per sample, leaf first."""
    out, frames, t = [], None, None
    for line in open(path, errors="replace"):
        if not line.strip():
            if frames is not None:
                out.append((t, frames))
            frames = None
            continue
        if not line.startswith("\t") and not line.startswith(" " * 8):
            m = re.match(r"\s*\d+\s+([\d.]+):", line)
            t, frames = (float(m.group(1)) if m else 0.0), []
        elif frames is not None:
            addr, _, sym = line.strip().partition(" ")
            frames.append(("K " if addr.startswith("ffffffff") else "") + sym)
    if frames is not None:
        out.append((t, frames))
    return out


KERNEL = [
    ("kernel: exec (mapping the binary)", ["load_elf_binary", "bprm_execve"]),
    ("kernel: page faults (first touch of code and memory)", ["exc_page_fault"]),
    ("kernel: process exit", ["do_exit", "do_group_exit"]),
    ("kernel: system calls (sockets, epoll, mmap, files)", ["entry_SYSCALL", "do_syscall_64"]),
]


def category(frames):
    if frames and frames[0].startswith("K "):
        kernel = "\n".join(f for f in frames if f.startswith("K "))
        for name, patterns in KERNEL:
            if any(p in kernel for p in patterns):
                return name
        return "kernel: scheduling and interrupts"
    joined = "\n".join(frames)
    for name, patterns in RULES:
        if any(p in joined for p in patterns):
            return name
    return "other: " + (frames[0] if frames else "?")


def main():
    init, first = Counter(), Counter()
    runs = 0
    for path in sys.argv[1:]:
        s = sorted(samples(path), key=lambda x: x[0])
        if not s:
            continue
        runs += 1
        start = next((i for i, (_, f) in enumerate(s) if any(HANDLER.search(x) for x in f)), len(s))
        # The first invocation ends where the process idles until it is
        # stopped: the first gap of over 50 ms after the handler started.
        end = len(s)
        for i in range(start + 1, len(s)):
            if s[i][0] - s[i - 1][0] > 0.05:
                end = i
                break
        for _, f in s[:start]:
            init[category(f)] += 1
        for _, f in s[start:end]:
            first[category(f)] += 1
    print(f"{runs} starts, CPU ms per start (a sample = {PERIOD_MS} ms of CPU)\n")
    for title, counts in (("init (exec -> the first event's handler)", init),
                          ("first invocation (handler -> idle)", first)):
        print(f"| {title} | CPU ms |")
        print("|---|---|")
        for name, n in counts.most_common():
            ms = n * PERIOD_MS / runs
            if ms >= 0.02:
                print(f"| {name} | {ms:.2f} |")
        print(f"| **total** | **{sum(counts.values()) * PERIOD_MS / runs:.2f}** |\n")


if __name__ == "__main__":
    main()
