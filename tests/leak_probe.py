# Leak probes for tests/leaks.rs, run inside a wrap as the unprivileged test user.
#
#   python3 leak_probe.py KIND ARG... [-- KIND ARG...]...
#
# Each probe prints one line, "KIND ARG...: RESULT", where RESULT is "ok", an errno
# name (ENETUNREACH...), "timeout", or what was received. Nothing here ever sends to
# anything but the addresses the test names, which are on loopback or inside
# namespaces the test made. Probes that change namespaces run in a forked child.
import ctypes
import errno
import os
import socket
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MNT_DETACH = 1, 32, 4096, 2
PTRACE_ATTACH, PTRACE_DETACH = 16, 17


def ename(e):
    return errno.errorcode.get(e, str(e))


def last():
    return ename(ctypes.get_errno())


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def dns_query(name):
    header = struct.pack(">HHHHHH", 0x2b2b, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
    return header + labels + b"\0" + struct.pack(">HH", 1, 1)


def skip_name(data, i):
    while True:
        n = data[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def a_records(data):
    count = struct.unpack(">H", data[6:8])[0]
    i = skip_name(data, 12) + 4
    out = []
    for _ in range(count):
        i = skip_name(data, i)
        rtype, _, _, length = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        if rtype == 1 and length == 4:
            out.append(socket.inet_ntoa(data[i:i + 4]))
        i += length
    return out


def dns(host, port, name):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(1.5)
    try:
        s.connect((host, int(port)))
        s.send(dns_query(name))
        data = s.recv(4096)
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return ename(e.errno)
    return "answer rcode=%d %s" % (data[3] & 0xF, " ".join(a_records(data)))


def connect(host, port, timeout="2"):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(float(timeout))
    start = time.monotonic()
    try:
        s.connect((host, int(port)))
        result = "ok"
    except socket.timeout:
        result = "timeout"
    except OSError as e:
        result = ename(e.errno)
    return "%s ms=%.3f" % (result, (time.monotonic() - start) * 1000)


def sendto(host, port):
    s = socket.socket(family(host.split("%")[0]), socket.SOCK_DGRAM)
    try:
        s.sendto(b"wg-wrap leak probe", (host, int(port)))
        return "ok"
    except OSError as e:
        return ename(e.errno)


def bind(host):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        return "ok"
    except OSError as e:
        return ename(e.errno)


def unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return "ok"
    except OSError as e:
        return ename(e.errno)


def getfd(pid):
    """Try to copy every descriptor out of process PID (pidfd_getfd(2))."""
    pidfd = libc.syscall(SYS_PIDFD_OPEN, int(pid), 0)
    if pidfd < 0:
        return "pidfd_open " + last()
    got, errors = [], {}
    for fd in range(64):
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            e = last()
            errors[e] = errors.get(e, 0) + 1
            continue
        got.append(str(fd))
        try:
            s = socket.socket(fileno=copy)
            try:
                s.sendto(b"wg-wrap leak probe", ("192.0.2.2", 9))
                got.append("SENT")
            except OSError:
                pass
            s.detach()
        except OSError:
            pass
        os.close(copy)
    text = " ".join("%sx%d" % kv for kv in sorted(errors.items()))
    return ("GOT " + " ".join(got) + " " if got else "") + "errors " + text


def ptrace(pid):
    if libc.ptrace(PTRACE_ATTACH, int(pid), 0, 0) == 0:
        libc.ptrace(PTRACE_DETACH, int(pid), 0, 0)
        return "ok"
    return last()


def setns_net(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return "open " + ename(e.errno)
    return "ok" if libc.setns(fd, CLONE_NEWNET) == 0 else last()


def in_child(fn):
    """Run fn in a forked child (it changes namespaces); return its result line."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = fn()
        except Exception as e:  # report, never escape the child
            result = "exception %r" % e
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.waitpid(pid, 0)
    return data.decode()


def own_userns():
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        return "unshare " + last()
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write("0 %d 1" % uid)
    with open("/proc/self/gid_map", "w") as f:
        f.write("0 %d 1" % gid)
    return None


def umount(path, nested):
    """Unmount PATH, here or in a user namespace of our own; then list it."""

    def attempt():
        if nested == "nested":
            failed = own_userns()
            if failed:
                return failed
        result = "ok" if libc.umount2(path.encode(), MNT_DETACH) == 0 else last()
        try:
            seen = ",".join(sorted(os.listdir(path))) if os.path.isdir(path) else "-"
        except OSError as e:
            seen = ename(e.errno)
        return "%s entries=[%s]" % (result, seen)

    return in_child(attempt)


def remount_rw(path, nested):
    """Remount PATH read-write, here or in a user namespace of our own, then write."""

    def attempt():
        if nested == "nested":
            failed = own_userns()
            if failed:
                return failed
        rc = libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND, None)
        result = "ok" if rc == 0 else last()
        try:
            with open(path, "a") as f:
                f.write("nameserver 127.0.0.53\n")
            wrote = "written"
        except OSError as e:
            wrote = ename(e.errno)
        return "%s %s" % (result, wrote)

    return in_child(attempt)


PROBES = {
    "dns": dns,
    "connect": connect,
    "sendto": sendto,
    "bind": bind,
    "unix": unix,
    "getfd": getfd,
    "ptrace": ptrace,
    "setns-net": setns_net,
    "umount": umount,
    "remount-rw": remount_rw,
}


def main(argv):
    groups, current = [], []
    for a in argv:
        if a == "--":
            groups.append(current)
            current = []
        else:
            current.append(a)
    groups.append(current)
    for g in groups:
        if g:
            print("%s: %s" % (" ".join(g), PROBES[g[0]](*g[1:])), flush=True)


main(sys.argv[1:])
