"""What another user can do: the checks behind ``cron install --user`` and ``check --cron``.

Cron runs a job as its crontab's user, so a log folder root made (0755, root's) stops the
job before opskit starts. These helpers answer, for that user, whether a path can be read,
written or run, by asking a forked child that has become the user (``os.access`` after
``setuid``), and make the folders a job writes owned by that user.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shlex
from collections.abc import Sequence
from pathlib import Path

from opskit.errors import ConfigError

READ, WRITE, RUN = os.R_OK, os.W_OK, os.X_OK


@dataclasses.dataclass(frozen=True)
class User:
    """A user as cron runs a job: name, uid, primary gid and every group."""

    name: str
    uid: int
    gid: int

    @classmethod
    def named(cls, name: str) -> User:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(f"no user {name!r}", "pass an existing user") from None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @classmethod
    def current(cls) -> User:
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def is_me(self) -> bool:
        return self.uid == os.geteuid()


def can(user: User, wanted: Sequence[tuple[Path, int]]) -> list[bool]:
    """Return, for each (path, mode), whether ``user`` may access it so (R/W/X_OK).

    Only root can ask for another user; for anyone else the answer is their own.
    """
    if user.is_me or os.geteuid() != 0:
        return [os.access(path, mode) for path, mode in wanted]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 0
        try:
            os.close(read_fd)
            os.setgroups(os.getgrouplist(user.name, user.gid))
            os.setgid(user.gid)
            os.setuid(user.uid)
            answer = "".join("1" if os.access(p, m) else "0" for p, m in wanted)
            os.write(write_fd, answer.encode())
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        answer = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if status or len(answer) != len(wanted):
        raise ConfigError(f"cannot check what {user.name} may access", "run it as root")
    return [c == "1" for c in answer]


def _exists_up_to(path: Path) -> Path:
    """The nearest existing folder at or above ``path``."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a job of a user would fail, and the fix.

    ``folder``: a folder or file the job writes is not the user's (``cron install`` can make
    new folders theirs, and refuses otherwise); ``start``: something the job needs to start
    (opskit, its Python, the project) is out of the user's reach.
    """

    kind: str  # "folder" or "start"
    text: str
    fix: str


_Need = tuple[Path, int, Problem]  # a path, the access the job needs, and the problem if not


def job_problems(
    user: User,
    *,
    opskit_bin: Path,
    project_dir: Path,
    log_file: Path,
    folders: Sequence[Path],
) -> list[Problem]:
    """Return why a cron job of ``user`` would not start or not write, each with its fix.

    Checks the shell's ``>> cron.log`` (the log file, or its folder), the opskit executable
    and its interpreter, the project folder and manage.py, and the folders the job writes.
    A path behind a folder the user cannot enter is named by that folder.
    """
    who = user.name
    wanted = [
        *_start_needs(who, opskit_bin, project_dir),
        *_write_needs(who, log_file, folders),
    ]
    answers = can(user, [(path, mode) for path, mode, _ in wanted])
    failed = [
        (path, problem) for (path, _, problem), ok in zip(wanted, answers, strict=True) if not ok
    ]
    return _by_cause(user, failed)


def _start_needs(who: str, opskit_bin: Path, project_dir: Path) -> list[_Need]:
    """What the job needs to start: opskit and its interpreter, the project, manage.py."""
    reach = _reach_fix(who)
    needs: list[_Need] = [
        (path, RUN, Problem("start", f"{who} cannot run {path}", reach))
        for path in (opskit_bin, *_interpreter(opskit_bin))
    ]
    text = f"{who} cannot read the project {project_dir}"
    needs.append((project_dir, READ | RUN, Problem("start", text, reach)))
    manage = project_dir / "manage.py"
    if manage.exists():
        fix = f"chmod o+r {shlex.quote(str(manage))}"
        needs.append((manage, READ, Problem("start", f"{who} cannot read {manage}", fix)))
    return needs


def _write_needs(who: str, log_file: Path, folders: Sequence[Path]) -> list[_Need]:
    """What the job writes: the shell's ``>> cron.log``, the folders and the files in them."""
    needs: list[_Need] = []

    def need(path: Path, mode: int, text: str, fix: str) -> None:
        needs.append((path, mode, Problem("folder", text, fix)))

    if log_file.exists():
        fix = f"chown {who}: {shlex.quote(str(log_file))}"
        need(log_file, WRITE, f"{who} cannot append to {log_file}", fix)
    for folder in folders:
        if folder.exists():
            fix = f"chown -R {who}: {shlex.quote(str(folder))}"
            need(folder, WRITE | RUN, f"{who} cannot write {folder}", fix)
            for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
                if entry.is_file() and not entry.is_symlink() and entry != log_file:
                    need(entry, READ | WRITE, f"{who} cannot write {entry}", fix)
        else:
            where = _exists_up_to(folder)
            fix = f"chown {who}: {shlex.quote(str(where))}"
            need(where, WRITE | RUN, f"{who} cannot create {folder}", fix)
    return needs


def _by_cause(user: User, failed: list[tuple[Path, Problem]]) -> list[Problem]:
    """Each problem once; a path behind a folder closed to the user is named by that folder."""
    who = user.name
    # Every folder above a failed path: the first one closed to the user is the real cause.
    above = sorted({a for path, _ in failed for a in path.absolute().parents})
    closed = {
        a for a, ok in zip(above, can(user, [(a, RUN) for a in above]), strict=True) if not ok
    }
    found: list[Problem] = []
    for path, problem in failed:
        gate = next((a for a in reversed(path.absolute().parents) if a in closed), None)
        if gate is not None:
            problem = Problem(
                "start", f"{who} cannot reach {path}: {gate} is closed to {who}", _reach_fix(who)
            )
        if problem not in found:
            found.append(problem)
    return found


def _interpreter(script: Path) -> list[Path]:
    """The interpreter named on a script's #! line (a venv's python), if any."""
    try:
        with script.open("rb") as f:
            first = f.readline(4096)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    words = first[2:].decode(errors="replace").split()
    return [Path(words[0])] if words and words[0].startswith("/") else []


def _reach_fix(who: str) -> str:
    # The usual cause: the venv or project lives under a private home (/root is 0700).
    return f"put the project and its venv where {who} can read them (not in a private home)"


def make_folders(user: User, folders: Sequence[Path]) -> list[Path]:
    """Create each missing folder (and missing parents) owned by ``user``; return the new ones.

    An existing folder is never chowned or chmodded: ``job_problems`` names its fix instead.
    """
    made: list[Path] = []
    for folder in folders:
        missing = []
        path = folder
        while not path.exists() and path != path.parent:
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o700 if path == folder else 0o755)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ConfigError(
                    f"cannot create {path}: {exc.strerror}", "create it by hand"
                ) from None
            if os.geteuid() == 0 and not user.is_me:
                os.chown(path, user.uid, user.gid)
            made.append(path)
    return made
