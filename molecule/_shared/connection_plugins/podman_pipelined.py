"""Connection plugin: the podman driver's connection, with Ansible's pipelining.

The containers.podman.podman connection runs every module in three ``podman
exec`` calls (make a temporary directory, run the module file put there, remove
it) because it never passes standard input: ``podman exec`` forwards it only
with ``-i``. This connection adds ``-i`` whenever Ansible hands it input, so a
pipelined module runs in one ``podman exec``, as a module does over SSH with
``pipelining = true`` (the project's ansible.cfg) on a real host. Modules, their
arguments and what they change are the same; only the transport differs.

Molecule's scenarios select it with ``ansible_connection: podman_pipelined``
(provisioner.connection_options) and find it through ANSIBLE_CONNECTION_PLUGINS.
"""

from __future__ import annotations

import shlex

from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible.plugins.loader import connection_loader

DOCUMENTATION = """
    name: podman_pipelined
    short_description: containers.podman.podman with pipelining
    description:
      - Run modules in an existing podman container, pipelined (one podman exec each).
    options:
      remote_addr:
        description: The container's name or ID.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User that runs commands in the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments to the podman command line.
        default: ''
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: Executable for podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      pipelining:
        description: Pipeline modules (one podman exec each).
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

PodmanConnection = connection_loader.get("containers.podman.podman", class_only=True)


class Connection(PodmanConnection):
    """containers.podman.podman, with standard input forwarded (pipelining)."""

    transport = "podman_pipelined"
    has_pipelining = True

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run ``cmd`` in the container; ``in_data`` goes to its standard input.

        Args:
            cmd: The shell command Ansible built.
            in_data: The pipelined module, or None.
            sudoable: Unused (no become in the containers).

        Returns:
            The return code, standard output and standard error.
        """
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        exec_args = ["exec", "-i"] if in_data is not None else ["exec"]
        if self.user:
            exec_args += ["--user", self.user]
        return self._podman(exec_args, shlex.split(cmd), in_data)
