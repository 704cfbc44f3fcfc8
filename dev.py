#!/usr/bin/env python3
"""Zero-setup entry point: `python3 dev.py serve` runs the service, `python3 dev.py test` the tests.

Creates ./.venv on first use and (re)installs the project into it whenever pyproject.toml
changes, then hands over to the `bangban` command or to pytest. Needs only Python >= 3.11 and
access to PyPI. Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
CHROMIUM = "/usr/bin/chromium"

USAGE = """usage: python3 dev.py serve [bangban serve options]   run the service on http://127.0.0.1:8080
       python3 dev.py test [pytest options]           run the whole test suite
       python3 dev.py bangban ARGS…                   any other bangban command"""


def ensure_venv(extras: str = "") -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Bangban needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print("creating .venv …", file=sys.stderr)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except Exception as exc:  # Debian without python3-venv lands here
            shutil.rmtree(VENV, ignore_errors=True)
            sys.exit(f"cannot create a virtualenv ({exc}); on Debian/Ubuntu: apt install python3-venv")
    spec = ".[test]" if extras == "test" else "."
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
    stamp = VENV / ".bangban-installed"
    installed = stamp.read_text().split() if stamp.exists() else []
    if digest in installed:
        return
    print(f"installing {spec} into .venv (first run, or pyproject.toml changed) …", file=sys.stderr)
    cmd = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "-e", spec]
    if subprocess.call(cmd, cwd=ROOT) != 0:
        sys.exit("installation failed; see the pip output above")
    stamp.write_text(" ".join([*installed, digest]))


def run_tests(args: list[str]) -> int:
    ensure_venv("test")
    env = dict(os.environ)
    if env.get("CI") and not Path(CHROMIUM).exists():
        print(f"CI: {CHROMIUM} is missing; browser tests must run in CI "
              "(apt-get install chromium)", file=sys.stderr)
        return 1
    code = subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env)
    if code == 5:
        print("pytest collected no tests: that is a failure", file=sys.stderr)
        return 1
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        return run_tests(rest)
    if command == "serve":
        ensure_venv()
        os.execv(str(BIN / "bangban"), [str(BIN / "bangban"), "serve", *rest])
    if command == "bangban":
        ensure_venv()
        os.execv(str(BIN / "bangban"), [str(BIN / "bangban"), *rest])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
