"""Connection plugin: run modules in a podman container through nsenter.

The podman driver's connection (containers.podman.podman) runs ``podman
mount`` for every task and a ``podman exec`` for every command, about 0.35 s
of wall time per task before the module itself runs; a converge that changes
nothing spent most of its time there. This connection enters the container's
namespaces with nsenter instead (molecule/_shared/container_namespaces.py says what
that keeps and what differs) and pipelines modules, one command each, as a
module runs over SSH with ``pipelining = true`` (the project's ansible.cfg) on a
real host. Modules, their arguments and what they change are the same; only
the transport differs.

Molecule's scenarios select it with ``ansible_connection: podman_nsenter``
(provisioner.connection_options) and find it through ANSIBLE_CONNECTION_PLUGINS.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase, ensure_connect

# The lookup is shared with the testinfra plugin, one directory up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import container_namespaces

DOCUMENTATION = """
    name: podman_nsenter
    short_description: Run modules in a running podman container through nsenter
    description:
      - Enter the namespaces of the container's init with nsenter.
      - Modules are pipelined, one command each.
    options:
      remote_addr:
        description: The container's name or ID.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: Account that runs commands in the container (root when unset).
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_executable:
        description: The podman command, to look up the container's init process.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      pipelining:
        description: Pipeline modules (one command each).
        default: true
        type: boolean
        ini:
          - section: connection
            key: pipelining
        env:
          - name: ANSIBLE_PIPELINING
        vars:
          - name: ansible_pipelining
"""


class Connection(ConnectionBase):
    """Commands and files in a running podman container, through nsenter."""

    transport = "podman_nsenter"
    has_pipelining = True

    def _connect(self):
        """Nothing stays open: every command enters the namespaces again."""
        super()._connect()
        self._connected = True
        return self

    def _run(
        self, argv: list[str], in_data: bytes | None = None, stdin=None
    ) -> tuple[int, bytes, bytes]:
        """Run ``argv`` in the container; return code, stdout and stderr."""
        container = self.get_option("remote_addr")
        try:
            host_argv, environment = container_namespaces.command(
                container,
                argv,
                self.get_option("remote_user"),
                self.get_option("podman_executable"),
            )
        except container_namespaces.ContainerNotRunning as error:
            raise AnsibleConnectionFailure(str(error)) from error
        self._display.vvv(f"NSENTER {shlex.join(host_argv)}", host=container)
        process = subprocess.Popen(  # noqa: S603 -- nsenter, then Ansible's own command
            host_argv,
            env=environment,
            stdin=subprocess.PIPE if in_data is not None else (stdin or subprocess.DEVNULL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = process.communicate(input=in_data)
        return process.returncode, stdout, stderr

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run the shell command Ansible built; ``in_data`` is the pipelined module."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        return self._run(shlex.split(cmd), in_data)

    @ensure_connect
    def put_file(self, in_path, out_path):
        """Copy a file of the controller to ``out_path`` in the container."""
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as source:
            returncode, _, stderr = self._run(
                ["sh", "-c", 'cat > "$1"', "sh", out_path], stdin=source
            )
        if returncode != 0:
            container = self.get_option("remote_addr")
            raise AnsibleError(f"could not write {out_path} in {container}: {stderr!r}")

    @ensure_connect
    def fetch_file(self, in_path, out_path):
        """Copy ``in_path`` of the container to the controller's ``out_path``."""
        super().fetch_file(in_path, out_path)
        returncode, content, stderr = self._run(["cat", in_path])
        if returncode != 0:
            container = self.get_option("remote_addr")
            raise AnsibleError(f"could not read {in_path} in {container}: {stderr!r}")
        Path(out_path).write_bytes(content)

    def close(self):
        """Nothing to close."""
        self._connected = False
