"""Install the cluster's munge key (base64 on stdin) at argv[1], if it differs.

The key is binary: it cannot pass through Ansible's copy module as text. It is
written beside the target with mode 0400 from the first byte, owned by munge,
then renamed over it; nothing is printed but "changed" when it changed.
"""

import base64
import os
import pwd
import sys

path = sys.argv[1]
key = base64.b64decode(sys.stdin.read().strip(), validate=True)
try:
    with open(path, "rb") as current:
        unchanged = current.read() == key
except FileNotFoundError:
    unchanged = False
if not unchanged:
    munge = pwd.getpwnam("munge")
    staged = f"{path}.new"
    if os.path.lexists(staged):
        os.unlink(staged)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    try:
        os.write(fd, key)
        os.fchown(fd, munge.pw_uid, munge.pw_gid)
    finally:
        os.close(fd)
    os.replace(staged, path)
    print("changed")
