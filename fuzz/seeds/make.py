#!/usr/bin/env python3
"""Makes the checked-in seed corpus (fuzz/corpus/<target>/) from real inputs.

Run from the workspace root on a node like the ones enforcer runs on:
    python3 fuzz/seeds/make.py
It reads deploy/enforcer.toml, this host's /proc/self/mountinfo and /sys/kernel/btf/vmlinux,
and the netlink captures of enforcer/src/actuators/tc/fixtures.rs. The seeds only start the
fuzzer in the right places; they are not expected outputs, and remaking them is harmless.
"""

import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- config: the documented file and the mistakes operators make -------------------------
def config():
    with open(os.path.join(ROOT, "deploy", "enforcer.toml")) as f:
        full = f.read()
    put("config", "deploy-enforcer.toml", full)
    put("config", "truncated.toml", full[: len(full) // 3])
    put("config", "empty.toml", "")
    bad = {
        "unknown-field.toml": "[daemon]\nbogus = 1\n",
        "bad-type.toml": '[daemon]\ntop_n = "x"\n',
        "window-below-tick.toml": '[daemon]\ntick = "2s"\nwindow = "1s"\n',
        "zero-tick.toml": '[daemon]\ntick = "0s"\n',
        "bad-regex.toml": '[[classify.rules]]\nname = "b"\nmatch = "("\nclass = "offline"\n',
        "priority-on-online.toml": '[[classify.rules]]\nname = "a"\nmatch = "x"\n'
        'class = "online"\npriority = "P1"\n',
        "rules.toml": '[classify]\nappend_defaults = true\n[[classify.rules]]\nname = "yarn-queues"\n'
        "match = 'yarn/(?P<priority>P[123]|debug)/container_'\nclass = \"offline\"\n",
        "ladder-flaps.toml": "[ladder]\ncpu_trigger = 0.5\n",
        "share-too-big.toml": "[ladder]\ncpu_trigger = 1.5\n",
        "static-capacity.toml": '[capacity]\npolicy = "static"\ncpu_share = 0.4\n'
        'memory_share = 0.3\nreserved_daemons = "40GiB"\n',
        "schedule.toml": '[capacity]\npolicy = "time_of_day"\n[[capacity.schedule]]\n'
        'start = "09:00"\ncpu_share = 0.2\nmemory_share = 0.2\n[[capacity.schedule]]\n'
        'start = "25:00"\ncpu_share = 0.6\nmemory_share = 0.5\n',
        "network.toml": '[network]\ninterface = "bond1"\npolicy = "static"\noffline_limit = "100mbit"\n'
        "capacity = \"1gbit\"\nceiling = \"800mbit\"\noffline_interfaces = '^mvoff'\n",
        "network-floor.toml": '[network]\nfloor = "2gbit"\nceiling = "1gbit"\n',
        "syntax.toml": "[daemon\ntick = 1\n",
        "multiline-string.toml": '[daemon]\nnode_name = """\nnode\n1"""\nsocket = \'/run/e\nx\'\n',
    }
    for name, text in bad.items():
        put("config", name, text)


# --- mountinfo: this host's, the layouts the unit tests know, and broken lines -------------
def mountinfo():
    with open("/proc/self/mountinfo") as f:
        text = f.read()
    put("mountinfo", "this-host", text)
    put("mountinfo", "this-host-truncated", text[: len(text) // 2])
    put(
        "mountinfo",
        "centos7-v1",
        "25 18 0:21 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "26 25 0:22 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,"
        "release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd\n"
        "29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n"
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "90 29 0:25 /kubepods /var/lib/kubelet/bind rw - cgroup cgroup rw,cpuacct,cpu\n",
    )
    put(
        "mountinfo",
        "hybrid-escaped",
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "40 31 0:37 / /sys/fs/cgroup/sys\\040temd rw,relatime - cgroup cgroup rw,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:1 - cgroup2 cgroup2 rw\n",
    )
    put("mountinfo", "no-cgroups", "1 0 0:1 / / rw - ext4 /dev/vda rw\n")


# --- btf: slices of this kernel's BTF ------------------------------------------------------
KIND_INT, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 3, 4, 5, 6
KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_DECL_TAG, KIND_ENUM64 = 13, 14, 15, 17, 19


def btf_types(data):
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", data
    )
    assert magic == 0xEB9F
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    at, end = hdr_len + type_off, hdr_len + type_off + type_len
    types = [None]
    while at < end:
        name_off, info, size = struct.unpack_from("<III", data, at)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        at += 12
        extra = {
            KIND_INT: 4,
            KIND_VAR: 4,
            KIND_DECL_TAG: 4,
            KIND_ARRAY: 12,
            KIND_STRUCT: 12 * vlen,
            KIND_UNION: 12 * vlen,
            KIND_ENUM: 8 * vlen,
            KIND_ENUM64: 12 * vlen,
            KIND_FUNC_PROTO: 8 * vlen,
            KIND_DATASEC: 12 * vlen,
        }.get(kind, 0)
        types.append((name_off, info, size, data[at : at + extra]))
        at += extra
    return strings, types


def name_of(strings, off):
    return strings[off : strings.index(b"\0", off)].decode()


def btf_subset(data):
    """The types task_offsets() and css_set_subsys_offset() resolve, from this kernel's BTF:
    each wanted struct with the members looked up, a few others, and its anonymous
    members' types (searched through); named members point at one `int`."""
    strings, types = btf_types(data)
    wanted = {
        "task_struct": {"pid", "cgroups"},
        "css_set": {"dfl_cgrp", "subsys"},
        "cgroup_subsys_state": {"cgroup"},
        "cgroup": {"kn"},
        "kernfs_node": {"id"},
    }
    out_strings = bytearray(b"\0")
    offsets = {}

    def s(text):
        if text not in offsets:
            offsets[text] = len(out_strings)
            out_strings.extend(text.encode() + b"\0")
        return offsets[text]

    out = [struct.pack("<IIII", s("int"), KIND_INT << 24, 4, 32)]  # id 1
    next_id = [2]

    def emit_composite(tid, keep):
        name_off, info, size, extra = types[tid]
        kind, vlen, flag = (info >> 24) & 0x1F, info & 0xFFFF, info & 0x80000000
        members = [struct.unpack_from("<III", extra, 12 * i) for i in range(vlen)]
        chosen = []
        for i, (m_name, m_type, m_off) in enumerate(members):
            n = name_of(strings, m_name) if m_name else ""
            if n in keep or (not n and types[m_type] and (types[m_type][1] >> 24) & 0x1F in (KIND_STRUCT, KIND_UNION)) or i < 3:
                chosen.append((n, m_type, m_off))
        my_id = next_id[0]
        next_id[0] += 1
        slot = len(out)
        out.append(None)
        body = bytearray()
        for n, m_type, m_off in chosen:
            if n:
                body += struct.pack("<III", s(n), 1, m_off)
            else:
                body += struct.pack("<III", 0, emit_composite(m_type, keep), m_off)
        head_name = s(name_of(strings, name_off)) if name_off else 0
        out[slot] = struct.pack("<III", head_name, flag | kind << 24 | len(chosen), size) + body
        return my_id

    found = set()
    for tid, t in enumerate(types):
        if t is None:
            continue
        name_off, info, _size, extra = t
        kind = (info >> 24) & 0x1F
        name = name_of(strings, name_off) if name_off else ""
        if kind == KIND_STRUCT and name in wanted and name not in found:
            found.add(name)
            emit_composite(tid, wanted[name])
        elif kind == KIND_ENUM and name == "cgroup_subsys_id" and name not in found:
            found.add(name)
            vlen = info & 0xFFFF
            body = bytearray()
            for i in range(vlen):
                v_name, v = struct.unpack_from("<Ii", extra, 8 * i)
                body += struct.pack("<Ii", s(name_of(strings, v_name)), v)
            out.append(struct.pack("<III", s(name), info, 4) + body)
            next_id[0] += 1
    type_bytes = b"".join(out)
    header = struct.pack(
        "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(type_bytes), len(type_bytes), len(out_strings)
    )
    return header + type_bytes + bytes(out_strings)


def btf():
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        data = f.read()
    subset = btf_subset(data)
    put("btf", "vmlinux-subset", subset)
    put("btf", "vmlinux-subset-truncated", subset[: len(subset) * 3 // 5])
    put("btf", "vmlinux-first-4k", data[:4096])
    # The header and the first records of this kernel, the sections cut to fit.
    _m, _v, _f, hdr_len, type_off, _tl, _so, _sl = struct.unpack_from("<HBBIIIII", data)
    types = data[hdr_len + type_off : hdr_len + type_off + 3072]
    strs = data[hdr_len + _so : hdr_len + _so + 1024]
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
    put("btf", "vmlinux-first-records", header + types + strs)


# --- tc_dump: the netlink captures of the codec's tests -------------------------------------
def tc_dump():
    with open(os.path.join(ROOT, "enforcer", "src", "actuators", "tc", "fixtures.rs")) as f:
        text = f.read()
    fixtures = dict(re.findall(r'const (\w+): &str =\s*"([0-9a-f]+)";', text))
    dump = b""
    for name in ["HTB_QDISC", "INGRESS_QDISC", "CLASS_ADD_SMALL", "CLASS_ADD_RATE64",
                 "REDIRECT_FILTER", "CLASSIFIER_ADD", "CLASS_DEL", "LINK_DUMP"]:
        b = bytes.fromhex(fixtures[name])
        put("tc_dump", name.lower(), b)
        if name != "CLASS_ADD_RATE64":
            dump += b
    with open(os.path.join(ROOT, "enforcer", "src", "actuators", "tc", "captures",
                           "link_answers.bin"), "rb") as f:
        put("tc_dump", "link_answers", f.read())
    put("tc_dump", "dump-of-several", dump)
    put("tc_dump", "dump-truncated", dump[: len(dump) - 7])


# --- control_request: what the CLI sends, and what it does not ------------------------------
def control_request():
    for name, line in {
        "snapshot": '{"request":"snapshot","limit":0}\n',
        "snapshot-all": '{"request":"snapshot","limit":null}\n',
        "tc-show": '{"request":"tc","apply":false,"dry_run":false}\n',
        "tc-apply-dry-run": '{"request":"tc","apply":true,"dry_run":true}',
        "unknown": '{"request":"reboot"}\n',
        "garbage": "GET / HTTP/1.1\r\n",
    }.items():
        put("control_request", name, line)


if __name__ == "__main__":
    for make in (config, mountinfo, btf, tc_dump, control_request):
        make()
    sys.exit(0)
