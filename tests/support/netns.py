"""Separate hosts for the fleet tests: Linux network namespaces on a bridge, and a DNS server.

Each host is a network namespace ``mlct-<pid>-<name>`` with one veth pair: ``eth0`` inside,
``mlct<pid><name>`` on the bridge ``mlct<pid>br`` outside. Addresses come from 198.18.0.0/15
(RFC 2544's benchmarking range, routed nowhere), one /24 per run, configured only inside these
namespaces and on the bridge. The bridge holds .1, where a real DNS server (dnslib's, in the
test process) answers for the test's names; the client namespace's resolv.conf names it
(``ip netns exec`` bind-mounts ``/etc/netns/<ns>/resolv.conf``), so mlc resolves through the
ordinary ``getaddrinfo`` path. The machine's /etc/hosts and /etc/resolv.conf are never touched.

Everything created carries the run's pid in its name; :meth:`NetLab.close` deletes it all, and
:func:`clean_stale` deletes what a crashed earlier run (a pid that no longer runs) left behind.
Needs root and ``ip``: :func:`unavailable` says why not.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lifecycle.serving.fleet import pid_alive

T = TypeVar("T")

PREFIX = "mlct"
NETNS_ETC = Path("/etc/netns")
CLONE_NEWNET = 0x40000000


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root to create network namespaces, veth pairs and a bridge (ip netns)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _kill_namespace_processes(ns: str) -> None:
    for pid in _ip("netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def clean_stale() -> list[str]:
    """Delete namespaces, links and /etc/netns folders of earlier runs whose pid is gone."""
    removed = []
    pattern = re.compile(rf"^{PREFIX}-(\d+)-")
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pattern.match(name)
        if m and not pid_alive(int(m.group(1))):
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(rf"^\d+: ({PREFIX}(\d+)[a-z0-9]*)[@:]", line)
        if m and not pid_alive(int(m.group(2))):
            _ip("link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    if NETNS_ETC.is_dir():
        for folder in NETNS_ETC.iterdir():
            m = pattern.match(folder.name)
            if m and not pid_alive(int(m.group(1))):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(str(folder))
    return removed


def _free_subnet(pid: int) -> str:
    """A 198.18.X or 198.19.X /24 no interface of this machine uses (first three octets)."""
    used = _ip("-o", "addr", "show", check=False).stdout
    for i in range(512):
        n = (pid + i) % 512
        prefix = f"198.{18 + n // 256}.{n % 256}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free /24 in 198.18.0.0/15")


class NetLab:
    """A bridge, namespaces on it (one address each), a DNS server on the bridge; all removed on close."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.tag = f"{PREFIX}-{self.pid}"
        self.bridge = f"{PREFIX}{self.pid}br"
        self.subnet = _free_subnet(self.pid)
        self.gateway = f"{self.subnet}.1"
        self.hosts: dict[str, str] = {}  # short name -> address
        self.processes: list[subprocess.Popen[Any]] = []
        self.dns: Any = None
        self.names: dict[str, list[str]] = {}  # DNS name -> addresses (mutable: tests re-point it)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def veth(self, name: str) -> str:
        return f"{PREFIX}{self.pid}{name}"

    def add_host(self, name: str) -> str:
        """A namespace with loopback up and eth0 on the bridge; returns its address."""
        ns, veth = self.ns(name), self.veth(name)
        address = f"{self.subnet}.{10 + len(self.hosts)}"
        _ip("netns", "add", ns)
        self.hosts[name] = address
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        folder = NETNS_ETC / ns
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(f"nameserver {self.gateway}\noptions timeout:1 attempts:2\n")
        return address

    def link(self, name: str, up: bool) -> None:
        """Set a host's link on the bridge up or down (a lost host, and its return)."""
        _ip("link", "set", self.veth(name), "up" if up else "down")

    # --- DNS --------------------------------------------------------------------------------

    def serve_dns(self) -> None:
        """A dnslib DNS server on the bridge's address, port 53, answering A records of ``names``."""
        from dnslib import QTYPE, RR, A
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        names = self.names

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: Any, handler: Any) -> Any:
                reply = request.reply()
                qname = str(request.q.qname).rstrip(".").lower()
                if qname not in names:
                    reply.header.rcode = 3  # NXDOMAIN
                elif request.q.qtype == QTYPE.A:
                    for address in list(names[qname]):
                        reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
                return reply

        self.dns = DNSServer(Resolver(), address=self.gateway, port=53, logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
        self.dns.start_thread()

    # --- processes --------------------------------------------------------------------------

    def popen(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside host ``name``'s namespace; killed on close."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(name), *argv], **kwargs)
        self.processes.append(proc)
        return proc

    def run(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside host ``name``'s namespace to completion."""
        return subprocess.run(["ip", "netns", "exec", self.ns(name), *argv], check=False, capture_output=True, text=True, **kwargs)

    def in_namespace(self, name: str, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` wrapped to run in a thread that first enters host ``name``'s network namespace.

        setns(2) moves only the calling thread, so sockets the thread opens live in that host.
        """
        path = f"/var/run/netns/{self.ns(name)}"

        def entered() -> T:
            fd = os.open(path, os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {path}")
            finally:
                os.close(fd)
            return fn()

        return entered

    def thread(self, name: str, fn: Callable[[], object]) -> threading.Thread:
        """A daemon thread running ``fn`` inside host ``name`` (not started)."""
        return threading.Thread(target=self.in_namespace(name, fn), daemon=True)

    # --- clean-up ---------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process started here, delete every namespace, link and /etc/netns folder."""
        if self.dns is not None:
            self.dns.stop()
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for name in self.hosts:
            _kill_namespace_processes(self.ns(name))
            _ip("netns", "del", self.ns(name), check=False)
            _ip("link", "del", self.veth(name), check=False)
            shutil.rmtree(NETNS_ETC / self.ns(name), ignore_errors=True)
        _ip("link", "del", self.bridge, check=False)
