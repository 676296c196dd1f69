"""parse_domain against libvirt's own reading of the same domain documents.

Each document is defined on libvirt's test driver and read back canonically (see
tests/libvirt/oracle.py); libvirt's canonical XML, read field by field without our parser, must
say what our DomainTuning of the original document says: pins, vCPU cpuset and placement,
numatune, memory sizes and guest NUMA cells. Our parse of libvirt's canonical XML must say it
too. Documents libvirt refuses for a cpuset, a memory size or unit, or a value outside one of
its enums are refused by parse_domain as well.

Left out on purpose: definitions libvirt refuses for a rule that is not about reading a value
(a memnode under placement='auto', a cellid without its cell, more vCPUs in cells than <vcpu>):
parse_domain reads them without judging them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from numaportal.virt.connection import open_connection
from numaportal.virt.domain import DomainXMLError, parse_domain, tuning_dict

from .conftest import TEST_URI
from .oracle import Oracle, Refused, domain_reading, tuning_reading

pytestmark = pytest.mark.libvirt

M = "<memory>1048576</memory>"
V2 = "<vcpu>2</vcpu>"


def vcpu(attrs: str, count: int = 2) -> str:
    return f"<vcpu {attrs}>{count}</vcpu>"


def tune(*parts: str) -> str:
    return f"<cputune>{''.join(parts)}</cputune>"


def pin(vcpu: int, cpuset: str) -> str:
    return f"<vcpupin vcpu='{vcpu}' cpuset='{cpuset}'/>"


def emu(cpuset: str) -> str:
    return f"<emulatorpin cpuset='{cpuset}'/>"


def numa(memory: str = "", *memnodes: str) -> str:
    """``<numatune>`` with a ``<memory ...>`` of these attributes and ``<memnode ...>``s."""
    inner = f"<memory {memory}/>" if memory else ""
    return f"<numatune>{inner}{''.join(f'<memnode {node}/>' for node in memnodes)}</numatune>"


def cells(*cells: str) -> str:
    return f"<cpu><numa>{''.join(f'<cell {cell}/>' for cell in cells)}</numa></cpu>"


CELLS = cells("id='0' cpus='0' memory='512'", "id='1' cpus='1' memory='512'")
AUTO_MEMORY = numa("placement='auto'")
DIMM = (
    "<devices><memory model='dimm'><target><size unit='KiB'>524288</size><node>0</node>"
    "</target></memory></devices>"
)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    conn = open_connection(TEST_URI)
    yield Oracle(conn)
    conn.close()


ACCEPTED = {
    # <uuid> and <memory> are optional: libvirt makes up the one and sums the cells for the other
    "uuid": f"<uuid>6695eb01-f6a4-8304-79aa-97f2502e1930</uuid>{M}{V2}",
    "no vcpu": M,
    "memory from cells": V2
    + cells("id='0' cpus='0' memory='512' unit='MiB'", "id='1' cpus='1' memory='1' unit='MB'"),
    "memory from cells, one without cpus": V2
    + cells("id='0' cpus='0-1' memory='1024'", "id='1' memory='2048'"),
    "memory 0 from cells": f"<memory>0</memory>{V2}{CELLS}",
    "memory kept beside cells": f"<memory>4096</memory>{V2}{CELLS}",
    "memory from cells and a dimm": "<maxMemory slots='4' unit='KiB'>4194304</maxMemory>"
    + V2
    + cells("id='0' cpus='0-1' memory='1048576'")
    + DIMM,
    "current memory 0": f"{M}<currentMemory>0</currentMemory>",
    "current memory above": f"{M}<currentMemory>9999999</currentMemory>",
    "current memory in bytes": f"{M}<currentMemory unit='b'>1</currentMemory>",
    "current memory in MB": f"{M}<currentMemory unit='MB'>1</currentMemory>",
    "size with leading space and plus": "<memory> +010</memory>",
    "size with leading tab": "<memory>&#9;12</memory>",
    # placement='auto': libvirt ignores <vcpu cpuset> (numad decides), unparsed
    "auto with cpuset": M + vcpu("placement='auto' cpuset='1-3'"),
    "auto with junk cpuset": M + vcpu("placement='auto' cpuset='junk'"),
    "auto with empty cpuset": M + vcpu("placement='auto' cpuset='^1'"),
    "auto with vcpupin": M + vcpu("placement='auto' cpuset='1-3'") + tune(pin(0, "4")),
    "auto with emulatorpin": M + vcpu("placement='auto'") + tune(emu("1")),
    "auto with static numatune": M + vcpu("placement='auto'") + numa("mode='strict' nodeset='0'"),
    "auto with modal numatune": M + vcpu("placement='auto'") + numa("mode='interleave'"),
    "auto with default numatune": M + vcpu("placement='auto'") + numa("placement='default'"),
    # numatune placement='auto' makes the vCPUs auto too, unless something is pinned
    "numatune auto": M + V2 + AUTO_MEMORY,
    "numatune auto drops nodeset": M + V2 + numa("mode='strict' placement='auto' nodeset='0'"),
    "numatune auto, vcpu static": M + vcpu("placement='static'") + AUTO_MEMORY,
    "numatune auto, vcpupin": M + V2 + tune(pin(0, "1")) + AUTO_MEMORY,
    "numatune auto, emulatorpin": M + V2 + tune(emu("1")) + AUTO_MEMORY,
    "numatune auto, iothreadpin": M
    + V2
    + "<iothreads>1</iothreads>"
    + tune("<iothreadpin iothread='1' cpuset='1'/>")
    + AUTO_MEMORY,
    "numatune auto, vcpu cpuset": M + vcpu("cpuset='1-3'") + AUTO_MEMORY,
    "numatune auto, vcpu cpuset of all": M + vcpu("cpuset='0-16383'") + AUTO_MEMORY,
    "numatune auto, pin of a missing vcpu": M + V2 + tune(pin(7, "1")) + AUTO_MEMORY,
    # numatune defaults
    "numatune without mode": M + V2 + numa("nodeset='0'"),
    "numatune default placement": M + V2 + numa("placement='default' nodeset='1'"),
    "numatune static placement": M + V2 + numa("mode='preferred' placement='static' nodeset='1'"),
    "numatune restrictive": M + V2 + numa("mode='restrictive' nodeset='1'"),
    "empty numatune": M + V2 + numa(),
    "memnode default mode": M
    + V2
    + CELLS
    + numa("", "cellid='0' nodeset='1'", "cellid='1' mode='interleave' nodeset='^3,3'"),
    # cpusets in their elements: left to right, up to 16383, what libvirt keeps or drops
    "vcpu cpuset left to right": M + vcpu("cpuset='^3,0-7'", 4),
    "vcpu cpuset of all": M + vcpu("cpuset='0-16383'", 4),
    "vcpu cpuset of all but one": M + vcpu("cpuset='0-16382'", 4),
    "ids up to 16383": M
    + vcpu("cpuset='8192-16383'")
    + tune(pin(0, "16383"), pin(1, "0-3,^1,1"), emu("0-16383"))
    + numa("mode='strict' nodeset='16383'"),
    "pin of a missing vcpu, junk and all": M + V2 + tune(pin(5, "junk"), pin(1, "1,")),
    "pins in two cputune": M + V2 + tune(pin(0, "1")) + tune(pin(1, "2")),
    "whitespace in cpusets": M + vcpu("cpuset=' 1 , 2 '") + tune(pin(0, "&#9;0 -&#10;3")),
    "cell cpus left to right": M + V2 + cells("id='0' cpus='^1,0-1' memory='1024'"),
}


@pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_documents_read_as_libvirt_reads_them(oracle: Oracle, body: str) -> None:
    document = oracle.document(body)
    canonical = oracle.define(document)
    ours = parse_domain(document)
    assert tuning_reading(ours) == domain_reading(canonical)
    # libvirt's canonical XML is a document too, read alike. (Not always as the original: a
    # <vcpu cpuset> of every id blocks "numatune auto makes the vCPUs auto", but libvirt writes
    # no cpuset for it, so defining its own output again gives placement='auto'.)
    assert tuning_reading(parse_domain(canonical)) == domain_reading(oracle.define(canonical))


def test_a_document_without_uuid_has_none_and_libvirt_makes_one_up(oracle: Oracle) -> None:
    document = oracle.document(M + V2, uuid=False)
    tuning = parse_domain(document)
    assert tuning_reading(tuning) == domain_reading(oracle.define(document))
    assert tuning.uuid is None
    assert tuning_dict(tuning)["uuid"] is None
    assert parse_domain(oracle.define(document)).uuid  # libvirt's own XML always has one


REFUSED = {
    "no memory at all": V2,
    "memory 0": f"<memory>0</memory>{V2}",
    "cells of 0": V2 + cells("id='0' cpus='0' memory='0'"),
    "size trailing space": "<memory>1024 </memory>",
    "size of spaces": "<memory> </memory>",
    "size only a sign": "<memory>+</memory>",
    "size negative": "<memory>-1</memory>",
    "size hex": "<memory>0x10</memory>",
    "size exponent": "<memory>1e3</memory>",
    "size decimal": "<memory>1.5</memory>",
    "size above ULLONG_MAX": "<memory>18446744073709551616</memory>",
    "size 2^53 KiB": "<memory>9007199254740992</memory>",
    "size 2^53 KiB in bytes": "<memory unit='bytes'>9223372036854774785</memory>",
    "size above LLONG_MAX bytes": "<memory unit='b'>9223372036854775808</memory>",
    "size 8 EiB": "<memory unit='EiB'>8</memory>",
    "size 10 EB": "<memory unit='EB'>10</memory>",
    "cell size junk": "<vcpu>1</vcpu>" + cells("id='0' cpus='0' memory='1 '"),
    "vcpu placement upper case": M + vcpu("placement='AUTO'"),
    "vcpu placement unknown": M + vcpu("placement='bogus'"),
    "numatune mode upper case": M + V2 + numa("mode='STRICT' nodeset='1'"),
    "numatune placement unknown": M + V2 + numa("placement='Auto'"),
    "numatune static without nodeset": M + V2 + numa("mode='strict' placement='static'"),
    "numatune mode without nodeset": M + V2 + numa("mode='interleave'"),
    "numatune junk nodeset under auto": M + V2 + numa("placement='auto' nodeset='junk'"),
    "numatune empty nodeset": M + V2 + numa("nodeset='1,^1'"),
    "memnode without nodeset": M + V2 + CELLS + numa("", "cellid='0' mode='interleave'"),
    "memnode mode unknown": M + V2 + CELLS + numa("", "cellid='0' mode='bogus' nodeset='0'"),
    "memnode twice": M + V2 + CELLS + numa("", "cellid='0' nodeset='1'", "cellid='0' nodeset='0'"),
    "vcpupin range exclusion": M + V2 + tune(pin(0, "0-7,^1-2")),
    "vcpupin id 16384": M + V2 + tune(pin(0, "16384")),
    "vcpupin empty result": M + V2 + tune(pin(0, "1,^1")),
    "vcpupin twice": M + V2 + tune(pin(0, "1"), pin(0, "2")),
    "emulatorpin empty": M + V2 + tune(emu("")),
    "emulatorpin twice": M + V2 + tune(emu("1"), emu("2")),
    "vcpu cpuset with space after caret": M + vcpu("cpuset='^ 1,0-2'"),
}


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_refused_documents_are_refused_by_both(oracle: Oracle, body: str) -> None:
    document = oracle.document(body)
    with pytest.raises(Refused):
        oracle.define(document)
    with pytest.raises(DomainXMLError):
        parse_domain(document)


# --- every memory unit libvirt knows, and its rounding up to KiB ---------------------------------

UNITS = [
    *("b", "B", "byte", "Byte", "bytes", "BYTES", ""),
    *("k", "K", "KB", "kb", "Kb", "KiB", "kib", "KIB"),
    *("m", "M", "MB", "MiB", "g", "G", "GB", "GiB", "t", "T", "TB", "TiB"),
    *("p", "P", "PB", "PiB", "e", "E", "EB", "EiB"),
    # refused by libvirt
    *(" KiB", "KiB ", "Z", "ZiB", "ZB", "x", "Ki", "KiBs", "bit", "bib", "\u212aiB", "kB "),
]
VALUES = ["1", "977", "1000", "1023", "1024", "1025", "3000"]


@pytest.mark.parametrize("unit", UNITS)
def test_memory_units_and_rounding_as_libvirt(oracle: Oracle, unit: str) -> None:
    for value in VALUES:
        document = oracle.document(f"<memory unit='{unit}'>{value}</memory>")
        try:
            expected = domain_reading(oracle.define(document))["memory_kib"]
        except Refused:
            with pytest.raises(DomainXMLError):
                parse_domain(document)
            continue
        assert parse_domain(document).memory_kib == expected, (unit, value)
        cell = f"<cpu><numa><cell id='0' cpus='0' memory='{value}' unit='{unit}'/></numa></cpu>"
        document = oracle.document(f"<vcpu>1</vcpu>{cell}")
        canonical = domain_reading(oracle.define(document))
        assert (
            tuning_reading(parse_domain(document))["guest_numa_cells"]
            == (canonical["guest_numa_cells"])
        )


def test_the_issue_memory_cases_in_words() -> None:
    def kib(size: str, unit: str) -> int:
        body = f"<memory unit='{unit}'>{size}</memory>"
        return parse_domain(f"<domain type='kvm'><name>m</name>{body}</domain>").memory_kib

    assert kib("1", "byte") == 1  # 'byte' is a unit, and a partial KiB rounds up
    assert kib("1025", "b") == 2
    assert kib("1", "MB") == 977  # 1,000,000 bytes = 976.5625 KiB
    assert kib("1", "KiB") == 1
