"""URI parameters that name files on the worker (keyfile, known_hosts, pkipath) stay inside one
directory: '..', symlinks and absolute paths elsewhere are refused with the parameter's name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from numaportal.virt.errors import InvalidURI
from numaportal.virt.uri import validate_uri

pytestmark = pytest.mark.libvirt


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    top = tmp_path / "ssh"
    (top / "pki").mkdir(parents=True)
    (top / "id_ed25519").write_text("key\n")
    (top / "known_hosts").write_text("hv01 ssh-ed25519 AAAA\n")
    return top


def _refused(uri: str, key_dir: Path) -> str:
    with pytest.raises(InvalidURI) as err:
        validate_uri(uri, file_dir=key_dir)
    return str(err.value)


def test_files_inside_the_directory_are_accepted(key_dir):
    for uri in (
        f"qemu+ssh://root@hv01/system?keyfile={key_dir}/id_ed25519&no_tty=1",
        f"qemu+libssh2://hv01/system?known_hosts={key_dir}/known_hosts&keyfile={key_dir}/new",
        f"qemu+tls://hv01/system?pkipath={key_dir}/pki",
        f"qemu+tls://hv01/system?pkipath={key_dir}",  # a directory: the top one will do
        f"qemu+ssh://hv01/system?keyfile={key_dir}/./id_ed25519",
    ):
        assert validate_uri(uri, file_dir=key_dir) == uri


def test_an_absolute_path_outside_is_refused_with_the_parameter(key_dir):
    message = _refused("qemu+ssh://hv01/system?keyfile=/etc/shadow", key_dir)
    assert message == (
        f"invalid libvirt URI: parameter 'keyfile' must name a file inside {key_dir}: "
        "got /etc/shadow"
    )
    assert "'known_hosts' must name a file inside" in _refused(
        "qemu+libssh://hv01/system?known_hosts=/root/.ssh/known_hosts", key_dir
    )
    assert "'pkipath' must name a file inside" in _refused(
        "qemu+tls://hv01/system?pkipath=/etc/pki/libvirt", key_dir
    )


def test_the_directory_itself_is_not_a_key(key_dir):
    assert "'keyfile' must name a file inside" in _refused(
        f"qemu+ssh://hv01/system?keyfile={key_dir}", key_dir
    )


def test_a_sibling_with_the_same_prefix_is_outside(key_dir, tmp_path):
    (tmp_path / "ssh-other").mkdir()
    assert "must name a file inside" in _refused(
        f"qemu+ssh://hv01/system?keyfile={tmp_path}/ssh-other/id", key_dir
    )


def test_dot_dot_out_of_the_directory_is_refused(key_dir):
    for uri in (
        f"qemu+ssh://hv01/system?keyfile={key_dir}/../../etc/shadow",
        f"qemu+ssh://hv01/system?keyfile={key_dir}/..",
        f"qemu+ssh://hv01/system?keyfile={key_dir}/pki/../../x",
    ):
        assert "plain absolute path" in _refused(uri, key_dir)


def test_a_symlink_out_of_the_directory_is_refused(key_dir):
    (key_dir / "innocent").symlink_to("/etc/shadow")
    (key_dir / "pkilink").symlink_to("/etc")
    message = _refused(f"qemu+ssh://hv01/system?keyfile={key_dir}/innocent", key_dir)
    assert message.endswith(f"got {key_dir}/innocent (resolves to /etc/shadow)")
    assert "(resolves to /etc/passwd)" in _refused(
        f"qemu+ssh://hv01/system?keyfile={key_dir}/pkilink/passwd", key_dir
    )
    assert "'pkipath' must name a file inside" in _refused(
        f"qemu+tls://hv01/system?pkipath={key_dir}/pkilink", key_dir
    )


def test_a_symlinked_directory_is_compared_resolved(key_dir, tmp_path):
    # The configured directory may itself be a link (/root/.ssh -> /srv/keys): both resolve.
    link = tmp_path / "keys-link"
    link.symlink_to(key_dir)
    uri = f"qemu+ssh://hv01/system?keyfile={key_dir}/id_ed25519"
    assert validate_uri(uri, file_dir=link) == uri
    via_link = f"qemu+ssh://hv01/system?keyfile={link}/id_ed25519"
    assert validate_uri(via_link, file_dir=key_dir) == via_link


@pytest.mark.parametrize(
    "value",
    ["%2Fetc%2Fshadow", "/ssh/%2e%2e/%2e%2e/etc/shadow", "/ssh/..%2Fetc", "%2e%2e/x"],
)
def test_percent_encoded_paths_are_refused(key_dir, value):
    # libvirt percent-decodes query values: '%' is refused before any path is looked at.
    assert "characters that are not allowed: %" in _refused(
        f"qemu+ssh://hv01/system?keyfile={value}", key_dir
    )


def test_without_a_directory_only_the_syntax_is_checked(key_dir):
    # What a worker does when it opens a URI that was checked at registration.
    uri = "qemu+ssh://hv01/system?keyfile=/etc/numaportal/id"
    assert validate_uri(uri) == uri
    assert "must name a file inside" in _refused(uri, key_dir)


def test_a_relative_directory_is_resolved_from_the_working_directory(key_dir, monkeypatch):
    monkeypatch.chdir(key_dir.parent)
    uri = f"qemu+ssh://hv01/system?keyfile={key_dir}/id_ed25519"
    assert validate_uri(uri, file_dir=os.path.basename(key_dir)) == uri
