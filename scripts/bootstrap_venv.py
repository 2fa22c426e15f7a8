"""Create the project virtualenv and put uv in it; only the standard library is used.

Run by `make` with the system interpreter: `python3 scripts/bootstrap_venv.py .venv 0.13.9`.

1. Refuses interpreters older than 3.11 with a clear message (this file parses on 3.6+).
2. `python3 -m venv VENV`. Debian's python3 ships without ensurepip unless python3-venv is
   installed; then the venv is made `--without-pip` instead.
3. Installs uv==VERSION from PyPI into the venv: with the venv's pip when it has one,
   otherwise by downloading the matching uv wheel from PyPI (sha256 checked) and letting
   that uv binary install uv into the venv.
"""

import sys

MINIMUM = (3, 11)

if sys.version_info < MINIMUM:
    sys.stderr.write(
        f"Paymesh needs Python >= {MINIMUM[0]}.{MINIMUM[1]}; {sys.executable} is Python "
        f"{sys.version_info[0]}.{sys.version_info[1]}.\n"
        "Install a newer python3 or run `make PYTHON=/path/to/python3.11`.\n"
    )
    sys.exit(1)

import hashlib  # noqa: E402 - after the version gate on purpose
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

PYPI = os.environ.get("PAYMESH_PYPI_URL", "https://pypi.org").rstrip("/")


def say(message: str) -> None:
    print(f"bootstrap: {message}", flush=True)


def create_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists():
        return python
    say(f"creating {venv} with {sys.executable} (Python {platform.python_version()})")
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False)
    if made.returncode != 0:
        say("python3 -m venv failed (no ensurepip? on Debian: apt-get install python3-venv);")
        say("retrying without pip; uv will be fetched from PyPI directly")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return python


def has_pip(python: Path) -> bool:
    probe = subprocess.run(
        [str(python), "-m", "pip", "--version"], capture_output=True, check=False
    )
    return probe.returncode == 0


def wheel_platform_words() -> tuple[str, str]:
    system = sys.platform
    machine = platform.machine().lower()
    if system.startswith("linux"):
        libc = "manylinux" if platform.libc_ver()[0] == "glibc" else "musllinux"
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        return libc, machine
    if system == "darwin":
        return "macosx", {"aarch64": "arm64"}.get(machine, machine)
    raise SystemExit(f"bootstrap: no pip in the venv and no uv wheel rule for {system}")


def download_uv_binary(version: str, directory: Path) -> Path:
    index = f"{PYPI}/pypi/uv/json"
    with urllib.request.urlopen(index, timeout=60) as response:
        files = json.load(response)["releases"].get(version, [])
    family, machine = wheel_platform_words()
    candidates = [
        file
        for file in files
        if file["filename"].endswith(".whl")
        and family in file["filename"]
        and machine in file["filename"]
    ]
    if not candidates:
        raise SystemExit(f"bootstrap: PyPI has no uv {version} wheel for {family} {machine}")
    chosen = candidates[0]
    say(f"downloading {chosen['filename']}")
    # Mirrors may answer with URLs relative to the JSON document.
    with urllib.request.urlopen(
        urllib.parse.urljoin(index, chosen["url"]), timeout=300
    ) as response:
        payload = response.read()
    if hashlib.sha256(payload).hexdigest() != chosen["digests"]["sha256"]:
        raise SystemExit("bootstrap: uv wheel sha256 does not match PyPI's; not using it")
    wheel = directory / chosen["filename"]
    wheel.write_bytes(payload)
    with zipfile.ZipFile(wheel) as archive:
        member = next(name for name in archive.namelist() if name.endswith(".data/scripts/uv"))
        binary = directory / "uv"
        binary.write_bytes(archive.read(member))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def install_uv(python: Path, version: str) -> None:
    requirement = f"uv=={version}"
    say(f"installing {requirement} into {python.parent.parent}")
    if has_pip(python):
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                requirement,
            ],
            check=True,
        )
        return
    with tempfile.TemporaryDirectory() as scratch:
        uv = download_uv_binary(version, Path(scratch))
        subprocess.run(
            [str(uv), "pip", "install", "--quiet", "--python", str(python), requirement],
            check=True,
        )


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: bootstrap_venv.py VENV UV_VERSION")
    venv, version = Path(sys.argv[1]), sys.argv[2]
    python = create_venv(venv)
    if not (venv / "bin" / "uv").exists():
        install_uv(python, version)


if __name__ == "__main__":
    main()
