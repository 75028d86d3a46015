"""The settings file's ``spawner.slurm`` section: what users may ask of a Slurm job.

Servers of the ``slurm`` kind are Slurm jobs (batchspawner's SlurmSpawner). The
spawn form offers a partition, a walltime, a memory size and a number of CPUs,
each within the bounds set here; the job script may carry site lines (extra
``#SBATCH`` options, and shell lines run before the server, such as
``module load``). Walltimes and memory sizes are read here once, by
:func:`walltime_seconds` and :func:`memory_mib`, for the settings and for the
form's checks alike. Nothing here imports JupyterHub or batchspawner.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from . import primitives as p
from .primitives import SettingsError

__all__ = [
    "JobBounds",
    "SlurmSettings",
    "conf_partition_limits",
    "conf_partitions",
    "format_walltime",
    "memory_mib",
    "parse_slurm",
    "walltime_seconds",
]

# Slurm's own time formats (sbatch(1), --time): minutes, minutes:seconds,
# hours:minutes:seconds, days-hours, days-hours:minutes, days-hours:minutes:seconds.
_WALLTIME_FORMS = (
    re.compile(r"^(?P<m>\d+)$"),
    re.compile(r"^(?P<m>\d+):(?P<s>\d{1,2})$"),
    re.compile(r"^(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2})$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2})$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2}):(?P<m>\d{1,2})$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})$"),
)
WALLTIME_HINT = "HH:MM:SS, like 02:00:00 (or Slurm's MM, MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)"
# sbatch --mem: a whole number, megabytes unless K, M, G or T follows.
_MEMORY_PATTERN = re.compile(r"^(?P<n>[1-9][0-9]{0,8})(?P<unit>[KMGT]?)$")
_MEMORY_UNITS_MIB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
MEMORY_HINT = "a whole number with M or G, like 2G or 512M"
PARTITION_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A site's own sbatch option: long form, with its value joined by '='.
DIRECTIVE_PATTERN = re.compile(r"^--(?P<name>[a-z][a-z0-9-]*)(=(?P<value>[^\s{}%'\"\\]+))?$")
# Options the form sets, or that the spawner needs as they are (its output,
# its name, where it runs, what it exports, whose it is).
SPAWNER_OWNED_OPTIONS = frozenset(
    {
        "partition",
        "time",
        "mem",
        "mem-per-cpu",
        "mem-per-gpu",
        "cpus-per-task",
        "ntasks",
        "nodes",
        "output",
        "error",
        "job-name",
        "chdir",
        "export",
        "get-user-env",
        "uid",
        "gid",
        "wrap",
        "array",
    }
)
_PARTITION_LINE = re.compile(r"^\s*PartitionName\s*=\s*(\S+)", re.IGNORECASE)
_MAX_TIME = re.compile(r"\bMaxTime\s*=\s*(\S+)", re.IGNORECASE)


def walltime_seconds(value: Any, path: str) -> int:
    """A walltime in one of Slurm's formats, in seconds (at least one minute).

    Raises:
        SettingsError: If it is not text in one of the formats, or is under a minute.
    """
    text = value if isinstance(value, str) else ""
    for pattern in _WALLTIME_FORMS:
        match = pattern.match(text.strip())
        if match:
            parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
            if (
                parts.get("s", 0) > 59
                or ("h" in parts and parts.get("m", 0) > 59)
                or ("d" in parts and parts.get("h", 0) > 23)
            ):
                break
            seconds = (
                parts.get("d", 0) * 86400
                + parts.get("h", 0) * 3600
                + parts.get("m", 0) * 60
                + parts.get("s", 0)
            )
            if seconds < 60:
                raise SettingsError(path, f"is {value!r}, under one minute; use {WALLTIME_HINT}")
            return seconds
    raise SettingsError(path, f"is {value!r}, not a walltime; use {WALLTIME_HINT}")


def format_walltime(seconds: int) -> str:
    """Seconds as Slurm's ``D-HH:MM:SS`` (``HH:MM:SS`` under a day)."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def memory_mib(value: Any, path: str) -> int:
    """A memory size as sbatch --mem takes it, in MiB (at least 1).

    Raises:
        SettingsError: If it is not a whole number with an optional K, M, G or T.
    """
    match = _MEMORY_PATTERN.match(value) if isinstance(value, str) else None
    if not match:
        raise SettingsError(path, f"is {value!r}, not a memory size; use {MEMORY_HINT}")
    mib = int(int(match["n"]) * _MEMORY_UNITS_MIB[match["unit"]])
    if mib < 1:
        raise SettingsError(path, f"is {value!r}, under 1M; use {MEMORY_HINT}")
    return mib


def conf_partition_limits(text: str) -> dict[str, int | None]:
    """The partitions a ``slurm.conf`` defines, each with its MaxTime in seconds.

    ``PartitionName=`` lines (DEFAULT is none); None where the line sets no
    MaxTime, sets INFINITE or UNLIMITED, or one this module cannot read (Slurm
    reads it; the walltime bound is then not checked against it).
    """
    limits: dict[str, int | None] = {}
    for line in text.splitlines():
        name = _PARTITION_LINE.match(line)
        if not name or name[1].upper() == "DEFAULT" or name[1] in limits:
            continue
        max_time = _MAX_TIME.search(line)
        seconds = None
        if max_time and max_time[1].upper() not in ("INFINITE", "UNLIMITED"):
            with contextlib.suppress(SettingsError):
                seconds = walltime_seconds(max_time[1], "MaxTime")
        limits[name[1]] = seconds
    return limits


def conf_partitions(text: str) -> tuple[str, ...]:
    """The partitions a ``slurm.conf`` defines (``PartitionName=`` lines; DEFAULT is none)."""
    return tuple(conf_partition_limits(text))


@dataclass(frozen=True)
class JobBounds:
    """What users may ask of their Slurm job; each pair is the default and the most.

    Walltimes are in seconds, memory in MiB; the first partition is the default.
    """

    partitions: tuple[str, ...]
    walltime: int
    walltime_max: int
    memory: int
    memory_max: int
    cpus: int
    cpus_max: int


@dataclass(frozen=True)
class SlurmSettings:
    """``spawner.slurm``: the job's bounds, the site's script lines, the cluster's config.

    Attributes:
        job: The spawn form's job fields and their bounds.
        directives: The site's extra ``#SBATCH`` options (``--constraint=avx2``).
        prologue: The site's shell lines, run in the job before the server.
        singleuser: ``batchspawner-singleuser`` on the compute nodes.
        conf_file: The cluster's ``slurm.conf`` on the hub host (its partitions
            are checked on the host).
    """

    job: JobBounds
    directives: tuple[str, ...]
    prologue: str
    singleuser: str
    conf_file: str


def _bounded(default: int, most: int, path: str, show: Any) -> None:
    if default > most:
        raise SettingsError(
            path,
            f"is {show(default)}, above the largest allowed ({show(most)}, {path}_max); "
            "lower it or raise the bound",
        )


def _directives(value: Any, path: str) -> tuple[str, ...]:
    directives = p.string_list(value, path)
    for index, directive in enumerate(directives):
        match = DIRECTIVE_PATTERN.match(directive)
        if not match:
            raise SettingsError(
                f"{path}[{index}]",
                f"is {directive!r}; each line is one sbatch option in its long form, like "
                "--constraint=avx2 (no spaces, quotes, braces or %)",
            )
        if match["name"] in SPAWNER_OWNED_OPTIONS:
            raise SettingsError(
                f"{path}[{index}]",
                f"sets --{match['name']}, which the spawner or the spawn form sets (partition, "
                "walltime, memory and CPUs have their own bounds); remove it",
            )
    return directives


def _prologue(value: Any, path: str) -> str:
    text = p.string(value, path, allow_empty=True)
    if "\x00" in text:
        raise SettingsError(path, "must be text (it contains a NUL byte)")
    bash = shutil.which("bash")
    if text.strip() and bash:
        checked = subprocess.run(  # noqa: S603 -- bash -n only parses, never runs
            [bash, "-n"], input=text, capture_output=True, text=True, check=False, timeout=10
        )
        if checked.returncode:
            error = checked.stderr.strip().splitlines()[-1:] or ["a syntax error"]
            raise SettingsError(
                path,
                f"is not valid shell (bash -n: {error[0].removeprefix('bash: ')}); "
                "fix the lines, which run in each job before the server",
            )
    return text


def parse_slurm(data: Any, path: str = "spawner.slurm") -> SlurmSettings:
    """Validate ``spawner.slurm``.

    Raises:
        SettingsError: For the first rule broken, naming its setting.
    """
    section = p.section(
        data,
        path,
        ("partitions", "walltime", "walltime_max", "memory", "memory_max", "cpus", "cpus_max"),
        ("directives", "prologue", "singleuser", "conf_file"),
    )
    partitions = p.pattern_list(
        section["partitions"], f"{path}.partitions", PARTITION_PATTERN, "partition name"
    )
    if not partitions:
        raise SettingsError(
            f"{path}.partitions", "must name at least one partition (the first is the default)"
        )
    walltime = walltime_seconds(section["walltime"], f"{path}.walltime")
    walltime_max = walltime_seconds(section["walltime_max"], f"{path}.walltime_max")
    _bounded(walltime, walltime_max, f"{path}.walltime", format_walltime)
    memory = memory_mib(section["memory"], f"{path}.memory")
    memory_max = memory_mib(section["memory_max"], f"{path}.memory_max")
    _bounded(memory, memory_max, f"{path}.memory", lambda mib: f"{mib}M")
    cpus = p.at_least_one(section["cpus"], f"{path}.cpus", "CPUs")
    cpus_max = p.at_least_one(section["cpus_max"], f"{path}.cpus_max", "CPUs")
    _bounded(cpus, cpus_max, f"{path}.cpus", str)
    conf_file = p.string(section.get("conf_file", ""), f"{path}.conf_file", allow_empty=True)
    if conf_file:
        p.absolute_path(conf_file, f"{path}.conf_file")
        if p.on_host():
            try:
                with open(conf_file, encoding="utf-8") as conf:
                    known = conf_partitions(conf.read())
            except OSError as e:
                raise SettingsError(
                    f"{path}.conf_file",
                    f"cannot be read ({e.strerror}): the hub needs the cluster's slurm.conf",
                ) from None
            for index, partition in enumerate(partitions):
                if partition not in known:
                    raise SettingsError(
                        f"{path}.partitions[{index}]",
                        f"{partition!r} is not a partition of {conf_file} "
                        f"(it has {', '.join(known) or 'none'}); offer one of those",
                    )
    singleuser = p.string(
        section.get("singleuser", "batchspawner-singleuser"), f"{path}.singleuser"
    )
    return SlurmSettings(
        job=JobBounds(
            partitions=partitions,
            walltime=walltime,
            walltime_max=walltime_max,
            memory=memory,
            memory_max=memory_max,
            cpus=cpus,
            cpus_max=cpus_max,
        ),
        directives=_directives(section.get("directives", []), f"{path}.directives"),
        prologue=_prologue(section.get("prologue", ""), f"{path}.prologue"),
        singleuser=singleuser,
        conf_file=conf_file,
    )
