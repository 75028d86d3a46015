#!/usr/bin/env python3
"""Pack hub_app's source into one reproducible tar archive, on the controller.

The role copies this one file to the host and pip installs hub_app from it,
instead of copying the package file by file: one transfer, and one checksum
that says whether anything changed. The archive depends on the files' contents
only (names sorted, owner root, fixed times and modes), so two checkouts of the
same commit give the same archive and a re-run from a fresh clone changes
nothing on the host.

Usage: pack_hub_app.py SOURCE_DIR ARCHIVE
"""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

# What a build of the package needs: not its tests, caches or build leftovers.
EXCLUDED = re.compile(r"(^|/)(tests|__pycache__|build|dist|\.[^/]*|[^/]*\.egg-info)(/|$)|\.pyc$")
TOP = "hub_app"


def included(source: Path) -> list[Path]:
    """The files and directories under ``source`` that go into the archive, sorted."""
    paths = (path for path in source.rglob("*") if path.is_file() or path.is_dir())
    return sorted(
        (path for path in paths if not EXCLUDED.search(path.relative_to(source).as_posix())),
        key=lambda path: path.relative_to(source).as_posix(),
    )


def pack(source: Path, archive: Path) -> None:
    """Write ``archive``: ``source``'s included files under ``hub_app/``."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in [source, *included(source)]:
            relative = path.relative_to(source).as_posix()
            info = tar.gettarinfo(path, arcname=TOP if relative == "." else f"{TOP}/{relative}")
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if info.isdir() else 0o644
            info.pax_headers = {}
            if info.isdir():
                tar.addfile(info)
            else:
                with path.open("rb") as content:
                    tar.addfile(info, content)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    pack(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
