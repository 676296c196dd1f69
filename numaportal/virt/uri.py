"""Validating libvirt connection URIs: an allow-list, because the URI is hostile input.

It comes from a browser form and is opened by a Celery worker, and libvirt URIs can run
commands (``ext`` transport, ``?command=``, ``?netcat=``), read files on the worker
(``test:///path.xml``) or talk to arbitrary local sockets (``?socket=``). So
:func:`validate_uri` accepts an explicit allow-list and refuses everything else by name.

The parameters that name a file on the worker (``keyfile``, ``known_hosts``, ``pkipath``)
are confined to one directory the caller passes in (the portal's ``NUMAPORTAL_URI_FILE_DIR``):
without that, ``?keyfile=/etc/shadow`` would have libvirt's ssh read any file the worker can.
"""

from __future__ import annotations

import ipaddress
import os
import re

from numaportal.virt import simulated
from numaportal.virt.errors import InvalidURI

__all__ = ["MAX_URI_LENGTH", "validate_uri"]

MAX_URI_LENGTH = 1024

_DRIVERS = frozenset({"qemu", "test"})
_QEMU_PATHS = frozenset({"/system", "/session"})
_REMOTE_TRANSPORTS = frozenset({"ssh", "libssh", "libssh2", "tls", "tcp"})

# Transports we refuse, with the reason the user sees.
_REFUSED_TRANSPORTS = {
    "ext": "it runs an arbitrary command on the worker",
}

# Query parameters we refuse, with the reason. Anything not in _ALLOWED_PARAMS is refused too;
# these just get a precise explanation because they are the dangerous ones.
_REFUSED_PARAMS = {
    "command": "it replaces the ssh/ext command run on the worker",
    "netcat": "it names the command run on the remote host",
    "socket": "it points libvirt at an arbitrary socket path",
    "proxy": "it chooses which helper binary runs on the remote host",
    "mode": "it chooses which daemon socket the remote side connects to",
    "name": "it passes an arbitrary URI (e.g. test:///path.xml) to the remote daemon",
    "no_verify": "it disables TLS certificate / ssh host key verification",
    "tls_priority": "it can weaken the TLS cipher selection",
    "tls": "it changes the TLS settings of the remote transport",
}

# The allow-list: what a central worker legitimately needs to pick its credentials and to
# never prompt, and nothing that runs a program, opens another socket or switches off host
# verification. Paths must be absolute and plain (see _PATH); they select files on the worker
# but only ever as ssh keys / known_hosts / a TLS pki directory for a host the user names,
# which is the whole point of the parameter.
#   keyfile            ssh private key (ssh, libssh, libssh2)
#   known_hosts        known_hosts file (libssh, libssh2)
#   known_hosts_verify normal|auto — "ignore" would disable host key checks (MITM), refused
#   sshauth            order of auth methods (libssh, libssh2); no prompts happen anyway
#   no_tty             1 stops ssh from asking for a password on a terminal (ssh)
#   pkipath            directory holding the TLS client certificate (tls)
_ALLOWED_PARAMS: dict[str, frozenset[str]] = {
    "keyfile": frozenset({"ssh", "libssh", "libssh2"}),
    "known_hosts": frozenset({"libssh", "libssh2"}),
    "known_hosts_verify": frozenset({"libssh", "libssh2"}),
    "sshauth": frozenset({"libssh", "libssh2"}),
    "no_tty": frozenset({"ssh"}),
    "pkipath": frozenset({"tls"}),
}
_PATH_PARAMS = frozenset({"keyfile", "known_hosts", "pkipath"})
_SSHAUTH_METHODS = frozenset({"agent", "privkey", "password", "keyboard-interactive"})
_KNOWN_HOSTS_VERIFY = frozenset({"normal", "auto"})

# Characters allowed anywhere in a URI. No '%' (libvirt percent-decodes query values, so
# "co%6dmand" would slip past a check done on the raw text), no ';' (libvirt also splits query
# parameters on ';', Python does not: "keyfile=/k;command=x" would look like one parameter to
# us and two to libvirt), no '#', quotes, backslashes, '$' or backticks.
_URI_CHARS = re.compile(r"[A-Za-z0-9._~:/?@=&,+\-\[\]]*")
_SCHEME = re.compile(r"[a-z][a-z0-9]*(\+[a-z0-9]+)?")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


def _refuse(problem: str, uri: str | None = None) -> InvalidURI:
    return InvalidURI(f"invalid libvirt URI: {problem}", None, uri)


def _check_host(host: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise _refuse(f"unbalanced '[' in host {host!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _refuse(f"{host!r} is not a valid IPv6 address") from None
        return host.lower()
    host = host.lower()
    if len(host) > 253:
        raise _refuse("host name is longer than 253 characters")
    # A leading '-' would be read as an option by ssh: "-oProxyCommand=..." runs a command.
    if host.startswith("-"):
        raise _refuse(f"host {host!r} starts with '-'")
    labels = host.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _refuse(f"{host!r} is not a valid host name or IPv4 address")
    return host


def _check_inside(key: str, value: str, file_dir: str | os.PathLike[str]) -> None:
    """*value* (a plain absolute path) resolves, symlinks and all, to a path inside *file_dir*.

    ``pkipath`` names a directory and may be *file_dir* itself; a file must be inside it.
    A path that does not exist yet resolves as far as it exists (os.path.realpath).
    """
    top = os.path.realpath(file_dir)
    real = os.path.realpath(value)
    inside = os.path.commonpath([top, real]) == top and (real != top or key == "pkipath")
    if not inside:
        got = value if real == os.path.normpath(value) else f"{value} (resolves to {real})"
        raise _refuse(f"parameter '{key}' must name a file inside {top}: got {got}")


def _check_param(
    key: str, value: str, transport: str, file_dir: str | os.PathLike[str] | None
) -> None:
    if key in _REFUSED_PARAMS:
        raise _refuse(f"parameter '{key}' is not allowed: {_REFUSED_PARAMS[key]}")
    if key not in _ALLOWED_PARAMS:
        allowed = ", ".join(sorted(_ALLOWED_PARAMS))
        raise _refuse(f"parameter '{key}' is not allowed (allowed: {allowed})")
    if transport not in _ALLOWED_PARAMS[key]:
        where = "/".join(sorted(_ALLOWED_PARAMS[key]))
        raise _refuse(f"parameter '{key}' only applies to the {where} transport")
    if key in _PATH_PARAMS:
        if not _PATH.fullmatch(value) or "/../" in f"{value}/":
            raise _refuse(f"parameter '{key}' must be a plain absolute path, not {value!r}")
        if file_dir is not None:
            _check_inside(key, value, file_dir)
    elif key == "no_tty":
        if value not in ("0", "1"):
            raise _refuse(f"parameter 'no_tty' must be 0 or 1, not {value!r}")
    elif key == "known_hosts_verify":
        if value not in _KNOWN_HOSTS_VERIFY:
            raise _refuse(
                f"known_hosts_verify={value!r} is not allowed: use 'normal' or 'auto' "
                "('ignore' would disable host key verification)"
            )
    elif key == "sshauth":
        methods = value.split(",")
        unknown = [m for m in methods if m not in _SSHAUTH_METHODS]
        if unknown or not value:
            raise _refuse(
                f"parameter 'sshauth' must list methods from "
                f"{', '.join(sorted(_SSHAUTH_METHODS))}, not {value!r}"
            )


def validate_uri(uri: str, *, file_dir: str | os.PathLike[str] | None = None) -> str:
    """Check a libvirt connection URI from an untrusted source and return it normalised.

    Accepted: drivers ``qemu`` (paths ``/system``, ``/session``) and ``test`` (only
    ``test:///default``); transports none, ``unix``, ``ssh``, ``libssh``, ``libssh2``, ``tls``,
    ``tcp``; an optional ``user@``, host and port; the query parameters listed in
    ``_ALLOWED_PARAMS``. Everything else raises :class:`InvalidURI` naming the problem.
    Normalised means: scheme and host lower-cased, empty query dropped.

    *file_dir*: the directory that ``keyfile``, ``known_hosts`` and ``pkipath`` must resolve
    into (after ``..``, ``.`` and symlinks); None checks only that they are plain absolute
    paths (a worker opening a URI that was checked when it was registered).
    """
    if not isinstance(uri, str):
        raise _refuse(f"a URI must be a string, not {type(uri).__name__}")
    if len(uri) > MAX_URI_LENGTH:
        raise _refuse(f"it is longer than {MAX_URI_LENGTH} characters ({len(uri)})")
    if not uri:
        raise _refuse("it is empty")
    for ch in uri:
        if ch.isspace() or not ch.isprintable():
            raise _refuse(f"it contains whitespace or a control character ({ch!r})")
    if not uri.isascii():
        raise _refuse("it contains non-ASCII characters")
    bad = sorted({ch for ch in uri if not _URI_CHARS.fullmatch(ch)})
    if bad:
        raise _refuse(f"it contains characters that are not allowed: {' '.join(bad)}")

    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _refuse("expected DRIVER[+TRANSPORT]://[HOST]/PATH")
    scheme = scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        raise _refuse(f"malformed scheme {scheme!r}")
    driver, _plus, transport = scheme.partition("+")
    if transport in _REFUSED_TRANSPORTS:
        raise _refuse(f"transport '{transport}' is not allowed: {_REFUSED_TRANSPORTS[transport]}")
    if driver not in _DRIVERS:
        raise _refuse(f"driver '{driver}' is not supported (use qemu, or test for the test driver)")
    if transport and transport not in _REMOTE_TRANSPORTS | {"unix"}:
        raise _refuse(f"transport '{transport}' is not supported")

    authority, slash, path_query = rest.partition("/")
    path, _q, raw_query = ("/" + path_query).partition("?") if slash else ("", "", "")

    if driver == "test":
        # test:///path.xml would make the worker read (and echo parts of) any file it can;
        # only the fleet simulator's own directory is allowed, and only when it is switched on.
        if uri.lower() == "test:///default":
            return "test:///default"
        if simulated.host_file(uri) is not None:
            return uri
        raise _refuse("the test driver is only allowed as test:///default")

    if path not in _QEMU_PATHS:
        raise _refuse(f"path {path!r} is not allowed for qemu (use /system or /session)")

    userinfo, at, hostport = authority.rpartition("@")
    if at and not userinfo:
        raise _refuse("empty user name before '@'")
    if ":" in userinfo:
        raise _refuse("a password in the URI is not allowed (it would end up in logs)")
    if userinfo and not _USER.fullmatch(userinfo):
        raise _refuse(f"user name {userinfo!r} is not allowed")
    if hostport.startswith("["):
        host, bracket, port_text = hostport.partition("]")
        host += bracket
    else:
        host, _colon, port_text = hostport.partition(":")
        port_text = _colon + port_text
    if port_text and (
        not re.fullmatch(r":[0-9]{1,5}", port_text) or not 1 <= int(port_text[1:]) <= 65535
    ):
        raise _refuse(f"port {port_text[1:]!r} is not a number from 1 to 65535")
    if userinfo and not host:
        raise _refuse("a user name needs a host")
    if port_text and not host:
        raise _refuse("a port needs a host")
    if transport in _REMOTE_TRANSPORTS and not host:
        raise _refuse(f"transport '{transport}' needs a host (e.g. {scheme}://host/system)")
    if transport == "unix" and host:
        raise _refuse("the unix transport is local: it takes no host")
    if host:
        host = _check_host(host)

    # Without a host, "qemu:///system" is local and takes no parameters; with a host and no
    # explicit transport, libvirt uses TLS.
    effective_transport = transport or ("tls" if host else "")
    params: list[tuple[str, str]] = []
    if raw_query:
        seen: set[str] = set()
        for item in raw_query.split("&"):
            key, eq, value = item.partition("=")
            if not key or not eq:
                raise _refuse(f"malformed query parameter {item!r} (expected key=value)")
            if key in seen:
                raise _refuse(f"parameter '{key}' is given twice")
            seen.add(key)
            if key in _REFUSED_PARAMS:
                raise _refuse(f"parameter '{key}' is not allowed: {_REFUSED_PARAMS[key]}")
            if not effective_transport:
                raise _refuse("a local qemu URI takes no parameters")
            _check_param(key, value, effective_transport, file_dir)
            params.append((key, value))

    netloc_out = (f"{userinfo}@" if userinfo else "") + host + port_text
    query = "&".join(f"{k}={v}" for k, v in params)
    return f"{scheme}://{netloc_out}{path}" + (f"?{query}" if query else "")
