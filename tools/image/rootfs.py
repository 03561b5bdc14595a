"""Assemble a shell-less runtime root filesystem from a Python build image (the Dockerfile's `runtime` stage).

    python rootfs.py DEST

DEST already holds the operator's dependencies (`pip install --root DEST`). This adds what they need
to run and nothing else: the interpreter, the standard library less what a server never imports
(tests, IDLE, tkinter, lib2to3, distutils, ensurepip, pydoc's topics, sqlite3, curses, dbm), the
shared libraries that `ldd` says the interpreter and every extension module load, /etc's user and
name-service files, and the Debian package records (status and copyright) of the libraries copied.
No shell, coreutils, apt, dpkg, perl or pip.

Bytecode is compiled here, for a read-only root filesystem: `unchecked-hash` .pyc files, which the
interpreter uses without comparing them to the sources' mtimes (COPY does not keep those). The
kubernetes client, three quarters of the dependencies' size (its sync and asyncio APIs and ~850
generated models, twice), is kept as bytecode only: its tracebacks name file and line, not the
source text.

Generic over the base: Debian's python3 (/usr/bin, dist-packages) or python:3.11-slim (/usr/local,
site-packages); the paths come from `sysconfig` and `ldd`.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

OPERATOR_UID = 10001

STDLIB_LEFT_OUT = {
    "site-packages", "dist-packages", "__pycache__", "test", "idlelib", "tkinter", "turtledemo",
    "turtle.py", "lib2to3", "distutils", "ensurepip", "pydoc_data", "sqlite3", "curses", "dbm",
    "venv", "config-3.11-x86_64-linux-gnu", "sitecustomize.py",
}  # fmt: skip
"""Top-level names under the stdlib directory not copied. sitecustomize.py is Debian's apport hook."""

EXTENSIONS_LEFT_OUT = re.compile(
    r"^(_test\w*|_ctypes_test|_xxtestfuzz|_xxsubinterpreters|xxlimited\w*|_curses\w*|readline|_dbm|_gdbm|_sqlite3"
    r"|_tkinter|nis|ossaudiodev|audioop)\."
)
"""lib-dynload modules not copied: CPython's test modules, and those of the packages left out."""

SOURCELESS = ("kubernetes",)
"""Distributions kept as bytecode only (see the module's docstring)."""

EXTRA_LIBRARIES = ("libgcc_s.so.1",)
"""Loaded with dlopen, so ldd does not list it: glibc needs it to unwind a thread on pthread_exit."""


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def copy_file(source: Path, dest_root: Path) -> None:
    """`source`'s target (all symlinks resolved) to the same path under dest_root and, when `source` itself is
    a symlink (a soname link, /lib64/ld-linux-x86-64.so.2), a relative symlink at its path to the copy."""
    real = source.resolve()
    target = dest_root / real.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy2(real, target)
    if source.is_symlink():
        directory = source.parent.resolve()  # /lib64 -> /usr/lib64: the usrmerge links are in dest_root too
        link = dest_root / directory.relative_to("/") / source.name
        if not os.path.lexists(link):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(real, directory))


def usrmerge_links(dest_root: Path) -> None:
    """/lib, /lib64, /bin -> usr/... as in the build image, so the loader's path (/lib64/ld-linux-x86-64.so.2)
    and ldd's (/lib/x86_64-linux-gnu/...) name the copied files."""
    for name in ("lib", "lib64", "bin"):
        top = Path("/") / name
        if top.is_symlink():
            (dest_root / name).symlink_to(os.readlink(top))


def interpreter(dest_root: Path) -> None:
    exe = Path(sys.executable)
    copy_file(exe, dest_root)
    real = exe.resolve()
    # The names scripts' shebangs and users call it by: python3.11, python3, python.
    for name in {exe.name, "python3", "python"} - {real.name}:
        link = dest_root / real.parent.relative_to("/") / name
        if not os.path.lexists(link):
            link.symlink_to(real.name)


def stdlib(dest_root: Path) -> Path:
    source = Path(sysconfig.get_path("stdlib"))
    target = dest_root / source.relative_to("/")

    def left_out(directory: str, names: list[str]) -> set[str]:
        if Path(directory) == source:
            return STDLIB_LEFT_OUT & set(names)
        if Path(directory).name == "lib-dynload":
            return {name for name in names if EXTENSIONS_LEFT_OUT.match(name)}
        return {name for name in names if name == "__pycache__"}

    shutil.copytree(source, target, symlinks=False, ignore=left_out, dirs_exist_ok=True)
    return target


def elf_files(dest_root: Path) -> list[Path]:
    found = []
    for path in dest_root.rglob("*"):
        if path.is_file() and not path.is_symlink() and (os.access(path, os.X_OK) or ".so" in path.name):
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def shared_libraries(dest_root: Path) -> list[Path]:
    """Every library ldd resolves for the ELF files under dest_root (libraries of libraries included),
    plus EXTRA_LIBRARIES; copied under dest_root. Returns the build image's paths, for the package records."""
    wanted: set[Path] = set()
    for elf in elf_files(dest_root):
        # (ldd exits 1 on a statically linked file: nothing to add.)
        listing = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False).stdout
        for line in listing.splitlines():
            if "not found" in line:
                sys.exit(f"rootfs.py: {elf}: {line.strip()}")
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match and not match.group(1).startswith(str(dest_root)):
                wanted.add(Path(match.group(1)))
    libc_dir = next(path.parent for path in wanted if path.name.startswith("libc.so"))
    wanted |= {libc_dir / name for name in EXTRA_LIBRARIES if (libc_dir / name).exists()}
    for library in sorted(wanted):
        copy_file(library, dest_root)
    return sorted(wanted)


def etc(dest_root: Path) -> None:
    target = dest_root / "etc"
    target.mkdir(exist_ok=True)
    (target / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"workpools:x:{OPERATOR_UID}:{OPERATOR_UID}:workpools:/nonexistent:/usr/sbin/nologin\n"
    )
    (target / "group").write_text(f"root:x:0:\nnogroup:x:65534:\nworkpools:x:{OPERATOR_UID}:\n")
    (target / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\nservices: files\n")
    # The kubelet and podman bind-mount these over the image's; an empty file is the mount point.
    for name in ("hosts", "resolv.conf", "hostname"):
        (target / name).touch()
    for name in ("os-release", "ssl/openssl.cnf"):  # ca-certificates.crt: the Dockerfile COPYs it (see there)
        if Path("/etc", name).exists():
            copy_file(Path("/etc", name), dest_root)
    ssl_dir = Path("/usr/lib/ssl")  # Debian's OpenSSLDIR: symlinks into /etc/ssl
    if ssl_dir.is_dir():
        (dest_root / "usr/lib/ssl").mkdir(parents=True, exist_ok=True)
        for entry in ssl_dir.iterdir():
            if entry.is_symlink():
                (dest_root / "usr/lib/ssl" / entry.name).symlink_to(os.readlink(entry))
    tmp = dest_root / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def package_records(dest_root: Path, files: list[Path]) -> None:
    """Debian's records of the packages the copied files come from (distroless's layout: one status file
    per package in /var/lib/dpkg/status.d, which scanners read), and their copyright files."""
    if shutil.which("dpkg-query") is None:
        return
    # dpkg knows a file by the path its package ships it at, /lib/... or /usr/lib/... (usrmerge): ask both.
    aliases = {str(path)[4:] if str(path).startswith("/usr/") else f"/usr{path}" for path in files}
    # (It exits 1 for the alias it does not know.) A line: "libssl3:amd64, other: /usr/lib/.../libssl.so.3".
    query = ["dpkg-query", "-S", *map(str, files), *aliases]
    owners = subprocess.run(query, check=False, capture_output=True, text=True).stdout.splitlines()
    packages = sorted({owner.split(":")[0] for line in owners for owner in line.split(": ")[0].split(", ")})
    status_dir = dest_root / "var/lib/dpkg/status.d"
    status_dir.mkdir(parents=True, exist_ok=True)
    for package in packages:
        (status_dir / package).write_text(run("dpkg-query", "-s", package))
        copyright_file = Path("/usr/share/doc", package, "copyright")
        if copyright_file.exists():
            (dest_root / "usr/share/doc" / package).mkdir(parents=True, exist_ok=True)
            shutil.copy2(copyright_file, dest_root / "usr/share/doc" / package / "copyright")


def prune_site_packages(site: Path) -> None:
    """Test suites shipped inside packages, and the kubernetes client's *_test.py."""
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in {"tests", "test"} and path.parent != site:
            shutil.rmtree(path)
    for path in site.glob("kubernetes/**/*_test.py"):
        path.unlink()


def compile_bytecode(dest_root: Path, directories: list[Path]) -> None:
    for directory in directories:
        for cache in [p for p in directory.rglob("__pycache__") if p.is_dir()]:
            shutil.rmtree(cache)
        for package in SOURCELESS:
            if (directory / package).is_dir():
                # Legacy layout (module.pyc beside where module.py was) is what the sourceless loader finds.
                ok = compileall.compile_dir(
                    directory / package, quiet=1, legacy=True, workers=0, stripdir=str(dest_root), prependdir="/",
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )  # fmt: skip
                if not ok:
                    sys.exit(f"rootfs.py: compiling {directory / package} failed")
                for source in (directory / package).rglob("*.py"):
                    source.unlink()
        ok = compileall.compile_dir(
            directory, quiet=1, workers=0, stripdir=str(dest_root), prependdir="/",
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )  # fmt: skip
        if not ok:
            sys.exit(f"rootfs.py: compiling {directory} failed")


def main() -> None:
    dest_root = Path(sys.argv[1]).resolve()
    site = dest_root / Path(sysconfig.get_path("purelib")).relative_to("/")
    if not site.is_dir():
        sys.exit(f"rootfs.py: {site} is missing: install the dependencies with `pip install --root {dest_root}` first")
    usrmerge_links(dest_root)
    interpreter(dest_root)
    target_stdlib = stdlib(dest_root)
    libraries = shared_libraries(dest_root)
    etc(dest_root)
    owned = [Path(sys.executable).resolve(), *libraries, Path("/usr/sbin/update-ca-certificates")]
    owned += [Path(sysconfig.get_path("stdlib"), name) for name in ("os.py", "asyncio/__init__.py")]
    package_records(dest_root, [path for path in owned if path.exists()])
    prune_site_packages(site)
    compile_bytecode(dest_root, [target_stdlib, site])


if __name__ == "__main__":
    main()
