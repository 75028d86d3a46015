"""Stand in for the hub on its API address until every compute node has come.

Run on the hub host by tasks/preflight.yml before anything changes, when no hub
answers there yet: argv is the address, the port, a greeting, the number of
nodes and the seconds to wait. Each connection gets the greeting (which only
this run knows, so a node proves it reached this host). Binding also proves
the address is one of this host's and the port free. Exits 0 when every node
came, 3 when it cannot listen (said on stdout), 4 on timeout.
"""

import socket
import sys

address, port, greeting = sys.argv[1], int(sys.argv[2]), sys.argv[3]
nodes, seconds = int(sys.argv[4]), float(sys.argv[5])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
listener = socket.socket(family, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    listener.bind((address, port))
except OSError as e:
    print(f"cannot listen on {address}:{port}: {e.strerror}")
    sys.exit(3)
listener.listen(nodes)
listener.settimeout(seconds)
try:
    for _ in range(nodes):
        connection, _peer = listener.accept()
        connection.sendall(f"{greeting}\n".encode())
        connection.close()
except TimeoutError:
    sys.exit(4)
