"""Network namespaces for tests: a process that can reach nothing but its own loopback.

    python tests/netns.py new -- ARGV...        ARGV in a new network namespace
    python tests/netns.py enter PID -- ARGV...  ARGV in the network namespace of process PID

A new namespace has one interface, loopback, brought up here; no route leads off the
machine, so a connection to any other address fails at once ("Network is unreachable")
and a host name does not resolve. Unix sockets are files, not network, so a Podman
service's socket still answers. ``enter(pid)`` moves only the calling *thread* (a network
namespace belongs to a thread), so a test can talk to such a server from a thread of its
own. Needs Linux and root (CAP_SYS_ADMIN); uses libc directly, so neither ``unshare``,
``nsenter`` nor ``ip`` has to be installed.
"""

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq: the interface's name, then ifr_flags in a 24-byte union

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def new():
    """Move this process (it must have one thread) into a new network namespace, lo up."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        name, flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS,
                                                       struct.pack(IFREQ, b"lo", 0)))
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def enter(pid):
    """Move the calling thread into the network namespace of process ``pid``."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns(network namespace of {pid})")
    finally:
        os.close(fd)


def main(argv):
    if len(argv) >= 3 and argv[0] == "new" and argv[1] == "--":
        new()
        command = argv[2:]
    elif len(argv) >= 4 and argv[0] == "enter" and argv[1].isdigit() and argv[2] == "--":
        enter(int(argv[1]))
        command = argv[3:]
    else:
        sys.exit("usage: python tests/netns.py new -- ARGV... | enter PID -- ARGV...")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
