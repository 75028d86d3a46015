"""Whether the hub answers at its API address, from this host (the hub or a node).

argv: the hub's API URL, its address, its port, a greeting, seconds to wait.
Without a greeting, a running hub must answer its API (JSON with its version).
With one, no hub runs yet and the stand-in listener (await_node.py) must send
that greeting, which only it knows; it may still be starting, so a refused
connection is tried again until the time is up. A bare TCP connection proves
nothing: some networks (a proxy, a NAT) accept connections to any address.
Exits 0 and prints who answered, else 1.
"""

import json
import socket
import sys
import time
import urllib.request

url, address, port, greeting, seconds = sys.argv[1:6]
deadline = time.monotonic() + float(seconds)
if not greeting:
    try:
        with urllib.request.urlopen(url, timeout=float(seconds)) as answer:  # noqa: S310 -- http
            if "version" in json.loads(answer.read(65536)):
                print("hub")
                sys.exit(0)
    except (OSError, ValueError):
        pass
    sys.exit(1)
while (left := deadline - time.monotonic()) > 0:
    try:
        with socket.create_connection((address, int(port)), left) as connection:
            connection.settimeout(max(deadline - time.monotonic(), 0.1))
            said = connection.recv(len(greeting) + 1).decode(errors="replace").strip()
    except (ConnectionRefusedError, ConnectionResetError):
        time.sleep(0.2)  # the listener is not listening yet
        continue
    except OSError:
        break
    if said == greeting:
        print("listener")
        sys.exit(0)
    break  # something else answered there
sys.exit(1)
