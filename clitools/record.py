"""The record of where a command ran, for the JSON it writes: Python's version, the machine, the installed version
of each package it uses (read from the installed distributions: nothing is imported), the git commit."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

DISTRIBUTIONS = {"fairseq": "fairseq-fixed"}  # an import name -> the distribution that provides it (pyproject.toml)


def installed_version(module):
    """The installed version of the package imported as `module` (None when it is not installed)."""
    for dist in dict.fromkeys((DISTRIBUTIONS.get(module, module), module)):
        try:
            return metadata.version(dist)
        except Exception:  # not installed / no version: record that, don't fail
            continue
    return None


def git_commit(repo):
    """HEAD of the git checkout at repo (None outside one)."""
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except Exception:
        return None


def versions(modules, machine=False, repo=None):
    """{"python": ..., ["platform", "cpus" with machine], each module's installed version, ["git_commit" of repo]}."""
    out = {"python": platform.python_version()}
    if machine:
        out.update(platform=platform.platform(), cpus=os.cpu_count())
    out.update({module: installed_version(module) for module in modules})
    if repo is not None:
        out["git_commit"] = git_commit(repo)
    return out
