"""What a Comfy Registry archive of the pack holds: the repository's tracked files less what
.comfyignore leaves out (gitignore-style patterns: a folder with a trailing slash, a path from
the root where the pattern has a slash, else a file name anywhere)."""
from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ignored_patterns() -> list[str]:
    lines = (REPO / ".comfyignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(relative: str) -> bool:
    """Whether .comfyignore leaves the repository path ``relative`` out of the archive."""
    for pattern in ignored_patterns():
        if pattern.endswith("/") and (relative + "/").startswith(pattern):
            return True
        if "/" in pattern.rstrip("/") and fnmatch.fnmatch(relative, pattern):  # a path from the root
            return True
        if "/" not in pattern and fnmatch.fnmatch(Path(relative).name, pattern):
            return True
    return False


def repository_files() -> list[str]:
    """The repository's files as git lists them (tracked, and new ones it does not ignore), that exist."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return sorted(f for f in listed if (REPO / f).is_file())


def archive_files() -> list[str]:
    """The repository's files that the archive holds."""
    return [f for f in repository_files() if not is_ignored(f)]


def copy_archive(dest: Path) -> Path:
    """The archive's files copied into the new folder ``dest``, as a user's custom_nodes/ gets them."""
    for relative in archive_files():
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, dest / relative)
    return dest
