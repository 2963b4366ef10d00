"""CI's second Python: installs tuitrain for the newest Python on this machine that is newer than the
suite's, and runs `.ci/smoke.py` with it.

    python3 .ci/newer_python.py

Looks for python3.N on PATH and in pyenv (`pyenv root`, $PYENV_ROOT, ~/.pyenv: versions/*/bin/python),
keeps final releases with the GIL (no alphas, no free-threaded builds) newer than the suite's Python
(`.venv/bin/python`, else this one), and takes the newest. Its venv goes in a temporary folder,
removed afterwards; the install goes through constraints.txt, as `dev.py` does (a wheel built from the
checkout, not an editable install).

Exit status, for `.ci/run`:
- 0: the smoke test passed; or no newer Python exists (a note says so); or the install could not
  reach the package index, timed out, or there is too little disk (a warning says so: the machine's
  network or disk, not the project, and the main suite has already passed);
- 1: the install failed for another reason (pip resolved and refused, a build broke: the project
  does not install on that Python), or the smoke test failed after a good install.
"""

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_LIMIT = 20 * 60  # seconds; here ~1.5 min: ~0.9 GB from PyPI (torch, triton), the CUDA libraries from disk
SMOKE_LIMIT = 10 * 60  # seconds; here ~20 s
DISK_NEEDED = 8 * 2**30  # bytes; the venv takes 5.5 GB (torch's CUDA build and its libraries)
# pip's words when the index or a download could not be reached (it retries, then gives up)
NETWORK = re.compile(
    r"NewConnectionError|ConnectTimeoutError|ReadTimeoutError|Read timed out|ProtocolError|IncompleteRead"
    r"|Connection (?:reset|refused|aborted|broken)|Temporary failure in name resolution|Name or service not known"
    r"|Network is unreachable|No route to host|Could not fetch URL|SSLError|ProxyError|RemoteDisconnected"
    r"|Max retries exceeded|HTTPSConnectionPool|HTTP error 5\d\d|THESE PACKAGES DO NOT MATCH THE HASHES"
    r"|No space left on device",
    re.IGNORECASE,
)
PROBE = (
    "import json, sys, sysconfig; v = sys.version_info; "
    "print(json.dumps([v.major, v.minor, v.micro, v.releaselevel, "
    "bool(sysconfig.get_config_var('Py_GIL_DISABLED')), sys.executable]))"
)

Version = tuple[int, int, int]


def say(line: str) -> None:
    print(line, flush=True)


def probe(python: str) -> tuple[Version, str] | None:
    """(version, real path) of a usable interpreter, else None (a pyenv shim for a version not
    selected, a broken link, an alpha, a free-threaded build)."""
    try:
        out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=30)
        major, minor, micro, level, free_threaded, executable = json.loads(out.stdout)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or level != "final" or free_threaded:
        return None
    return (major, minor, micro), os.path.realpath(executable)


def pyenv_roots() -> list[str]:
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    if shutil.which("pyenv"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30).stdout.strip())
    return [root for root in dict.fromkeys(roots) if root and os.path.isdir(root)]


def newer_pythons(than: Version) -> list[tuple[Version, str]]:
    """Usable Pythons with a newer major.minor than `than`, newest first, each interpreter once."""
    names = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        names += [path for path in glob.glob(os.path.join(folder, "python3.*")) if re.search(r"python3\.\d+$", path)]
    for root in pyenv_roots():
        names += glob.glob(os.path.join(root, "versions", "*", "bin", "python"))

    def could_be_newer(path: str) -> bool:  # skip starting the ones whose names say older
        found = re.search(r"python(\d+)\.(\d+)$", path) or re.search(r"/(\d+)\.(\d+)[^/]*/bin/python$", path)
        return found is None or (int(found[1]), int(found[2])) > than[:2]

    found: dict[str, Version] = {}
    for name in dict.fromkeys(names):
        if could_be_newer(name) and (probed := probe(name)) is not None and probed[0][:2] > than[:2]:
            found[probed[1]] = probed[0]
    return sorted(((version, path) for path, version in found.items()), reverse=True)


def suite_python() -> Version:
    venv_python = ROOT / ".venv" / "bin" / "python"
    probed = probe(str(venv_python)) if venv_python.exists() else None
    return probed[0] if probed else sys.version_info[:3]


def run_limited(command: list[str], limit: float, log: Path | None = None) -> int | None:
    """Runs `command` in its own process group; its exit status, or None when it ran past `limit`
    seconds (then the whole group is killed). Output goes to `log`, else to ours."""
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(log, "w")) if log else None
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT if sink else None,
            start_new_session=True,
        )
        try:
            return process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join("    " + line for line in log.read_text(errors="replace").splitlines()[-lines:])


def main() -> int:
    suite = suite_python()
    suite_name = f"{suite[0]}.{suite[1]}"
    candidates = newer_pythons(suite)
    if not candidates:
        say(f"smoke on a Python newer than {suite_name}: skipped (no newer Python on this machine)")
        return 0
    (major, minor, micro), python = candidates[0]
    label = f"smoke on Python {major}.{minor}.{micro} ({python})"
    scratch = Path(tempfile.mkdtemp(prefix=f"tuitrain-py{major}{minor}-"))
    try:
        free = shutil.disk_usage(scratch).free
        if free < DISK_NEEDED:
            say(
                f"warning: {label}: skipped: {free / 2**30:.1f} GiB free in {scratch.parent}, "
                f"its install needs about {DISK_NEEDED / 2**30:.0f}"
            )
            return 0
        venv = scratch / "venv"
        if run_limited([python, "-m", "venv", str(venv)], 300, scratch / "venv.log") != 0:
            say(f"warning: {label}: skipped: `{python} -m venv` failed (no venv module?):")
            say(tail(scratch / "venv.log"))
            return 0
        say(f"{label}: installing tuitrain through constraints.txt into a venv in {scratch} ...")
        started = time.monotonic()
        log = scratch / "pip.log"
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
        # --retries: pip logs a failed connection only when it retries, so never 0 (PIP_RETRIES could say 0)
        pip += ["--retries", "5", "--progress-bar", "off", "-c", str(ROOT / "constraints.txt"), str(ROOT)]
        status = run_limited(pip, INSTALL_LIMIT, log)
        install_seconds = time.monotonic() - started
        if status is None:
            say(f"warning: {label}: not run: the install took over {INSTALL_LIMIT} s (a slow network?); its log:")
            say(tail(log))
            return 0
        if status != 0:
            network = NETWORK.search(log.read_text(errors="replace"))
            if network:
                say(f"warning: {label}: not run: the install failed on the network or disk ({network[0]}); its log:")
                say(tail(log))
                return 0
            say(f"{label}: FAILED: tuitrain does not install on Python {major}.{minor} (pip exited {status}):")
            say(tail(log, 60))
            return 1
        say(f"{label}: installed in {install_seconds:.0f} s; the smoke test:")
        started = time.monotonic()
        status = run_limited([str(venv / "bin" / "python"), str(ROOT / ".ci" / "smoke.py")], SMOKE_LIMIT)
        smoke_seconds = time.monotonic() - started
        if status == 0:
            say(f"{label}: passed (install {install_seconds:.0f} s, smoke test {smoke_seconds:.0f} s)")
            return 0
        say(f"{label}: FAILED ({'over ' + str(SMOKE_LIMIT) + ' s' if status is None else f'exit {status}'})")
        suite_venv = ROOT / ".venv" / "bin" / "python"
        if suite_venv.exists():  # tells a Python-specific failure from a smoke test that fails everywhere
            say(f"the same smoke test with the suite's Python {suite_name} (.venv), for comparison:")
            status = run_limited([str(suite_venv), str(ROOT / ".ci" / "smoke.py")], SMOKE_LIMIT)
            say(f"... on {suite_name}: {'passed' if status == 0 else 'FAILED too'}")
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
