"""Print, as JSON, whether a TCP port is listened on and by which processes.

Run on the managed host by the tls role's preflight (ansible.builtin.script):
``python3 port-listener.py 80``. Reads /proc only; changes nothing.
"""

import json
import os
import pwd
import sys


def listening_sockets(port: int) -> dict[str, str]:
    """Inode -> owning user of every socket listening on the port."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    # state 0A is LISTEN; local address is HEXADDR:HEXPORT
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes[fields[9]] = user_name(int(fields[7]))
        except OSError:
            continue
    return inodes


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owners(inodes: dict[str, str]) -> list[dict]:
    """Processes holding those sockets (only those /proc lets us see: in a
    container without CAP_SYS_PTRACE, root cannot read other users' fds)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            if not any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append({"pid": int(pid), "command": command})
    return found


def main() -> int:
    port = int(sys.argv[1])
    inodes = listening_sockets(port)
    report = {
        "port": port,
        "listening": bool(inodes),
        "users": sorted(set(inodes.values())),
        "owners": owners(inodes) if inodes else [],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
