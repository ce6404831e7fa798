#!/usr/bin/env python3
"""Render deploy/redis/users.acl into an ACL file redis-server can load (`--aclfile`).

The committed users.acl holds placeholders (`#<producer-password-sha256>`), never secrets; this
script puts in the SHA-256 of each role's password. A password comes from FRAMECAST_REDIS_<ROLE>_PASSWORD
(ADMIN, PRODUCER, WORKER, TRACKER, WEB) when set, else from --env-file when it already holds one, else a new
random one. With --env-file the passwords are written there (mode 0600) for docker compose to put
in each service's REDIS_URL; the ACL file itself only holds their hashes. Passwords are never printed.

    python deploy/redis/make-acl.py --out run/redis/users.acl --env-file run/redis/passwords.env
    python deploy/redis/make-acl.py ... --acl-mode 0644     # bind-mounted into the redis container
    python deploy/redis/make-acl.py --out users.acl --key-prefix cam --redis-version 7.0

Standard library only: it runs on a host without framecast installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import sys
from pathlib import Path

ROLES = ("admin", "producer", "worker", "tracker", "web")
TEMPLATE = Path(__file__).resolve().parent / "users.acl"
PLACEHOLDER = re.compile(r"#<([a-z]+)-password-sha256>")
# Passwords go into redis:// URLs unescaped (compose interpolates them), so only URL-unreserved characters.
PASSWORD_RE = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # common/config.py's key_prefix rule: no glob characters
# CLIENT SETINFO (sent by redis-py on connect) exists from Redis 7.2; older servers refuse the rule.
SETINFO_SINCE = (7, 2)


class UsageError(Exception):
    """A bad argument or password; the message says which, never the value."""


def env_var(role: str) -> str:
    return f"FRAMECAST_REDIS_{role.upper()}_PASSWORD"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
    return values


def choose_passwords(environ: dict[str, str], env_file: dict[str, str]) -> dict[str, str]:
    passwords = {}
    for role in ROLES:
        name = env_var(role)
        password = environ.get(name) or env_file.get(name) or secrets.token_urlsafe(32)
        if not PASSWORD_RE.match(password):
            raise UsageError(f"{name}: use 16-256 characters from A-Z a-z 0-9 . _ ~ - (it goes into a redis:// URL)")
        passwords[role] = password
    return passwords


def render(template: str, passwords: dict[str, str], key_prefix: str, redis_version: tuple[int, int]) -> str:
    """The ACL file text: hashes for the placeholders, key patterns under `key_prefix`."""
    if redis_version < (7, 0):
        raise UsageError("--redis-version: ACL selectors and %R~/%W~ key permissions need Redis 7.0 or later")
    if not PREFIX_RE.match(key_prefix):
        raise UsageError("--key-prefix: use 1-32 characters from A-Z a-z 0-9 _ . - (as key_prefix in the config)")

    def digest(match: re.Match) -> str:
        role = match.group(1)
        if role not in passwords:
            raise UsageError(f"{TEMPLATE.name}: placeholder for unknown role {role!r}")
        return "#" + hashlib.sha256(passwords[role].encode()).hexdigest()

    text = PLACEHOLDER.sub(digest, template)
    text = re.sub(r"(~)fc:", rf"\g<1>{key_prefix}:", text)
    if redis_version < SETINFO_SINCE:
        text = text.replace(" +client|setinfo", "")
    return text


def updated_env_file(path: Path, passwords: dict[str, str]) -> str:
    """`path`'s text with our variables set: their lines replaced, missing ones appended, the rest kept."""
    wanted = {env_var(role): passwords[role] for role in ROLES}
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for line in lines:
        name = line.partition("=")[0].strip()
        out.append(f"{name}={wanted.pop(name)}" if name in wanted else line)
    out += [f"{name}={value}" for name, value in wanted.items()]
    return "\n".join(out) + "\n"


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` to `path`, by default readable by its owner only (it holds hashes or passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, mode)


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"^(\d+)\.(\d+)", text)
    if not match:
        raise UsageError("--redis-version: use MAJOR.MINOR, e.g. 7.4")
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="the ACL file to write (mode 0600)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="default: users.acl next to this script")
    parser.add_argument("--env-file", type=Path, help="read passwords from it and write them back (mode 0600)")
    parser.add_argument("--key-prefix", default="fc", help="key_prefix of the services (default fc)")
    parser.add_argument("--redis-version", default="7.2", help="MAJOR.MINOR of the redis-server (default 7.2)")
    parser.add_argument("--acl-mode", choices=("0600", "0644"), default="0600",
                        help="permissions of the ACL file; 0644 when a container's redis user must read a "
                             "bind mount (it holds only SHA-256 hashes of random passwords)")
    args = parser.parse_args(argv)
    try:
        env_file = read_env_file(args.env_file) if args.env_file else {}
        passwords = choose_passwords(dict(os.environ), env_file)
        text = render(args.template.read_text(), passwords, args.key_prefix, parse_version(args.redis_version))
    except (UsageError, OSError) as exc:
        print(f"make-acl: {exc}", file=sys.stderr)
        return 2
    write_private(args.out, text, int(args.acl_mode, 8))
    if args.env_file:
        write_private(args.env_file, updated_env_file(args.env_file, passwords))
    print(f"make-acl: wrote {args.out} (users {', '.join(ROLES)}; default may only PING)"
          + (f" and the passwords to {args.env_file}" if args.env_file else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
