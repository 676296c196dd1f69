"""URI validation: the allow-list of libvirt URIs a worker may open (the URI is hostile input)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from numaportal.virt.errors import InvalidRequest, InvalidURI
from numaportal.virt.uri import validate_uri

pytestmark = pytest.mark.libvirt


# --- validate_uri ---------------------------------------------------------------------------

GOOD_URIS = [
    ("qemu:///system", "qemu:///system"),
    ("qemu:///session", "qemu:///session"),
    ("QEMU:///system", "qemu:///system"),
    ("qemu:///system?", "qemu:///system"),
    ("test:///default", "test:///default"),
    ("TEST:///default", "test:///default"),
    ("qemu+unix:///system", "qemu+unix:///system"),
    ("qemu+ssh://root@kvm01.example.com/system", "qemu+ssh://root@kvm01.example.com/system"),
    ("qemu+ssh://KVM01.Example.COM:2222/system", "qemu+ssh://kvm01.example.com:2222/system"),
    (
        "qemu+ssh://ops@10.0.0.5/system?keyfile=/etc/numaportal/id_ed25519&no_tty=1",
        "qemu+ssh://ops@10.0.0.5/system?keyfile=/etc/numaportal/id_ed25519&no_tty=1",
    ),
    (
        "qemu+libssh2://h1/system?known_hosts=/etc/ssh/known&known_hosts_verify=normal"
        "&sshauth=agent,privkey",
        "qemu+libssh2://h1/system?known_hosts=/etc/ssh/known&known_hosts_verify=normal"
        "&sshauth=agent,privkey",
    ),
    ("qemu+libssh://h1/system?known_hosts_verify=auto", None),
    ("qemu+tls://[2001:db8::1]:16514/system?pkipath=/etc/pki/libvirt", None),
    ("qemu://kvm02/system?pkipath=/etc/pki/libvirt", None),
    ("qemu+tcp://127.0.0.1:16509/system", None),
]


@pytest.mark.parametrize(("uri", "normalised"), GOOD_URIS)
def test_validate_uri_accepts_and_normalises(uri: str, normalised: str | None) -> None:
    result = validate_uri(uri)
    assert result == (normalised or uri)
    assert validate_uri(result) == result  # normalising is idempotent


HOSTILE_URIS = [
    # runs commands on the worker or the remote host
    ("qemu+ext:///system?command=/bin/sh", "transport 'ext' is not allowed: it runs an arbitrary"),
    ("qemu+ssh://h/system?command=/bin/sh", "parameter 'command' is not allowed"),
    ("qemu+ssh://h/system?netcat=/tmp/evil", "parameter 'netcat' is not allowed"),
    ("qemu+ssh://h/system?proxy=netcat", "parameter 'proxy' is not allowed"),
    ("qemu+ssh://-oProxyCommand=touch/system", "starts with '-'"),
    ("qemu+ssh://-oProxyCommand=touch@h/system", "user name"),
    # parser differentials: libvirt splits on ';' and percent-decodes, Python does neither
    ("qemu+ssh://h/system?keyfile=/k;command=/bin/sh", "not allowed: ;"),
    ("qemu+ssh://h/system?co%6dmand=/bin/sh", "not allowed: %"),
    # reads files / talks to sockets on the worker
    ("test:///etc/passwd", "only allowed as test:///default"),
    ("test:///default?x=1", "only allowed as test:///default"),
    ("test+tcp://h/default", "only allowed as test:///default"),
    ("qemu:///system?socket=/run/docker.sock", "parameter 'socket' is not allowed"),
    ("qemu+unix:///system?socket=/run/docker.sock", "parameter 'socket' is not allowed"),
    ("qemu+ssh://h/system?name=test:///etc/shadow", "parameter 'name' is not allowed"),
    ("qemu+ssh://h/system?mode=legacy", "parameter 'mode' is not allowed"),
    ("qemu:///embed?root=/tmp/x", "path '/embed' is not allowed"),
    ("qemu+ssh://h/system?keyfile=relative/key", "plain absolute path"),
    ("qemu+ssh://h/system?keyfile=/a/../../etc/shadow", "plain absolute path"),
    # switches verification off
    ("qemu+tls://h/system?no_verify=1", "parameter 'no_verify' is not allowed"),
    ("qemu+libssh://h/system?known_hosts_verify=ignore", "'ignore' would disable host key"),
    ("qemu+tls://h/system?tls_priority=NONE", "parameter 'tls_priority' is not allowed"),
    # other drivers and transports
    ("xen:///system", "driver 'xen' is not supported"),
    ("lxc:///", "driver 'lxc' is not supported"),
    ("esx://h/?no_verify=1", "driver 'esx' is not supported"),
    ("qemu+foo://h/system", "transport 'foo' is not supported"),
    # shape
    ("", "it is empty"),
    ("qemu:/system", "expected DRIVER[+TRANSPORT]://"),
    ("qemu:///", "path '/' is not allowed"),
    ("qemu:///nonsense", "path '/nonsense' is not allowed"),
    ("qemu+ssh:///system", "transport 'ssh' needs a host"),
    ("qemu+unix://h/system", "the unix transport is local"),
    ("qemu+ssh://u:secret@h/system", "a password in the URI is not allowed"),
    ("qemu+ssh://@h/system", "empty user name"),
    ("qemu+ssh://h:0/system", "port '0'"),
    ("qemu+ssh://h:99999/system", "port '99999'"),
    ("qemu+ssh://h:22x/system", "port '22x'"),
    ("qemu+ssh://h_1/system", "not a valid host name"),
    ("qemu+tls://[::g]/system", "not a valid IPv6 address"),
    ("qemu+ssh://h/system#frag", "not allowed: #"),
    ("qemu+ssh://h/system?keyfile=/a&keyfile=/b", "given twice"),
    ("qemu+ssh://h/system?keyfile", "malformed query parameter"),
    ("qemu+ssh://h/system?pkipath=/etc/pki", "only applies to the tls transport"),
    ("qemu+ssh://h/system?no_tty=yes", "must be 0 or 1"),
    ("qemu+libssh://h/system?sshauth=gssapi", "parameter 'sshauth' must list"),
    ("qemu:///system?keyfile=/k", "a local qemu URI takes no parameters"),
    # whitespace, control characters, non-ASCII
    ("qemu:///system ", "whitespace or a control character"),
    ("qemu:///system\n", "whitespace or a control character"),
    ("qemu:///sys\x00tem", "whitespace or a control character"),
    ("qemu+ssh://h\t/system", "whitespace or a control character"),
    ("qemu+ssh://h\u00e9/system", "non-ASCII"),
    ("qemu+ssh://xn--h\u2024/system", "non-ASCII"),
    ('qemu+ssh://h/system?keyfile=/k"', 'not allowed: "'),
    ("qemu+ssh://h/system?keyfile=/$(id)", "not allowed: $ ( )"),
]


@pytest.mark.parametrize(("uri", "problem"), HOSTILE_URIS)
def test_validate_uri_refuses_hostile_uris(uri: str, problem: str) -> None:
    with pytest.raises(InvalidURI) as info:
        validate_uri(uri)
    assert problem in str(info.value)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.code is None


def test_validate_uri_names_the_ext_transport_problem() -> None:
    with pytest.raises(InvalidURI, match="transport 'ext' is not allowed: it runs an arbitrary "):
        validate_uri("qemu+ext:///system")


def test_validate_uri_refuses_overlong() -> None:
    uri = "qemu+ssh://h/system?keyfile=/" + "a" * 1000
    assert len(uri) > 1024
    with pytest.raises(InvalidURI, match="longer than 1024"):
        validate_uri(uri)
    # exactly at the limit is fine when otherwise valid
    ok = "qemu+ssh://h/system?keyfile=/" + "a" * (1024 - len("qemu+ssh://h/system?keyfile=/"))
    assert validate_uri(ok) == ok


def test_validate_uri_refuses_non_strings() -> None:
    with pytest.raises(InvalidURI, match="must be a string"):
        validate_uri(b"qemu:///system")  # type: ignore[arg-type]


@given(st.text(max_size=200))
def test_validate_uri_never_raises_anything_else(text: str) -> None:
    try:
        result = validate_uri(text)
    except InvalidURI:
        return
    assert validate_uri(result) == result


@given(
    st.from_regex(
        r"qemu\+(ssh|tls|tcp|libssh2)://[a-z0-9.\-@:\[\]_]{0,30}/(system|session)(\?[a-z_=/,&.]{0,40})?",
        fullmatch=True,
    )
)
def test_validate_uri_fuzzed_remote_uris(text: str) -> None:
    try:
        result = validate_uri(text)
    except InvalidURI:
        return
    assert validate_uri(result) == result
    assert "command" not in result and "socket" not in result and "netcat" not in result
