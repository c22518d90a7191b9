"""One writer per run folder: an exclusive, non-blocking OS lock on a file inside it.

`scalelens score` holds `FolderLock(out_dir)` from its first read of the tables to its last write. A second run on
the same folder refuses at once, naming the holder's pid and command (recorded in the lock file). The lock is
`fcntl.flock`: the kernel drops it when its process ends, however it ends, so a lock file left behind by a killed
run (kill -9, a crash, a lost node) blocks nothing; the next run takes it over. (flock is per machine: two machines
writing one folder on a network file system are not guarded.)
"""

from __future__ import annotations

import fcntl
import os
import shlex
import sys
from pathlib import Path

LOCK_FILE = ".scalelens.lock"


class FolderBusy(ValueError):
    """Another live process holds the folder's lock."""


def current_command() -> str:
    """This process's command line, shortened for the lock file and messages."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    text = shlex.join(argv)
    return text if len(text) <= 160 else text[:157] + "..."


class FolderLock:
    """Context manager: take the lock of `folder` (which must exist) or raise FolderBusy; release and remove the
    lock file on exit, whatever the exit."""

    def __init__(self, folder: Path, command: str | None = None) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.command = command or current_command()
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise FolderBusy(f"{self.path.parent}: another scalelens run is writing to this folder "
                                 f"({holder or 'holder unknown'}); wait for it to finish, or use another --out") from None
            # The previous holder removes the file as it lets go; if it did so between our open and our flock, we
            # hold a lock on a file no one else can see: start again on the path's current file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {self.command}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding the lock, so no one can take a doomed file
        os.close(self._fd)  # closing releases the flock
        self._fd = None


def _read(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return ""
