//! Kernel structure offsets from the running kernel's BTF.
//!
//! Rust eBPF programs cannot carry CO-RE relocations yet, so user space reads the few
//! offsets the CPU sampler needs from `/sys/kernel/btf/vmlinux` and hands them to the
//! program as a load-time global ([`TaskOffsets`]). This is a deliberately small reader: type
//! records are walked once, and only struct members and enum values are resolved.

use std::{collections::HashMap, path::Path};

use enforcer_common::{CgroupMode, TaskOffsets};
use thiserror::Error;

/// Where the kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "{path}: cannot read kernel BTF ({source}); enforcer needs a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a BTF blob ({what})")]
    Malformed { path: String, what: &'static str },
    #[error("{path}: kernel BTF has no {what}; this kernel is not supported")]
    Missing { path: String, what: String },
    #[error("{path}: kernel BTF is inconsistent: {what}")]
    Inconsistent { path: String, what: String },
}

/// How deep anonymous structs and unions are searched for a member. The kernel nests them
/// two or three deep; a blob whose anonymous member contains itself (directly or through
/// others) must end the search, not the stack.
const MAX_ANONYMOUS_DEPTH: u32 = 16;

/// `css_set.subsys` has `CGROUP_SUBSYS_COUNT` slots; kernels have about fifteen subsystems.
/// An id past this is not a slot of the array, whatever the blob says.
const MAX_SUBSYS: i64 = 64;

#[derive(Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

enum Type {
    Composite { members: Vec<Member> },
    Enum { values: Vec<(u32, i64)> },
    Other,
}

/// The type records of a BTF blob, enough to resolve member offsets and enum values.
pub struct Btf {
    origin: String,
    strings: Vec<u8>,
    types: Vec<Type>,
    names: HashMap<(u32, bool), Vec<u32>>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Btf::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Btf::parse(&data, &path.display().to_string())
    }

    /// Parses a little-endian BTF blob (the only byte order enforcer runs on).
    pub fn parse(data: &[u8], origin: &str) -> Result<Btf, BtfError> {
        let bad = |what| BtfError::Malformed {
            path: origin.to_string(),
            what,
        };
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(BTF_MAGIC) {
            return Err(bad("bad magic"));
        }
        let header = |i: usize| u32_at(4 + 4 * i).ok_or(bad("short header"));
        let hdr_len = header(0)? as usize;
        let (type_off, type_len) = (header(1)? as usize, header(2)? as usize);
        let (str_off, str_len) = (header(3)? as usize, header(4)? as usize);
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(bad("string section out of bounds"))?
            .to_vec();
        let type_end = hdr_len + type_off + type_len;
        if type_end > data.len() {
            return Err(bad("type section out of bounds"));
        }

        // Type id 0 is `void`; ids count from 1 in record order.
        let mut types = vec![Type::Other];
        let mut names: HashMap<(u32, bool), Vec<u32>> = HashMap::new();
        let mut at = hdr_len + type_off;
        while at < type_end {
            let rec = |i: usize| u32_at(at + 4 * i).ok_or(bad("truncated type record"));
            let (name_off, info) = (rec(0)?, rec(1)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let id = types.len() as u32;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for m in 0..vlen {
                        let base = at + 12 * m;
                        let field = |i: usize| u32_at(base + 4 * i).ok_or(bad("truncated member"));
                        let raw_offset = field(2)?;
                        members.push(Member {
                            name_off: field(0)?,
                            type_id: field(1)?,
                            // With kind_flag the top byte holds a bitfield size.
                            bit_offset: if kind_flag {
                                raw_offset & 0xff_ffff
                            } else {
                                raw_offset
                            },
                        });
                    }
                    at += 12 * vlen;
                    names.entry((name_off, true)).or_default().push(id);
                    Type::Composite { members }
                }
                KIND_ENUM | KIND_ENUM64 => {
                    let width = if kind == KIND_ENUM { 8 } else { 12 };
                    let mut values = Vec::with_capacity(vlen);
                    for v in 0..vlen {
                        let base = at + width * v;
                        let field = |i: usize| u32_at(base + 4 * i).ok_or(bad("truncated enum"));
                        let value = if kind == KIND_ENUM {
                            field(1)? as i32 as i64
                        } else {
                            (u64::from(field(2)?) << 32 | u64::from(field(1)?)) as i64
                        };
                        values.push((field(0)?, value));
                    }
                    at += width * vlen;
                    names.entry((name_off, false)).or_default().push(id);
                    Type::Enum { values }
                }
                _ => {
                    at += match kind {
                        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                        KIND_ARRAY => 12,
                        KIND_FUNC_PROTO => 8 * vlen,
                        KIND_DATASEC => 12 * vlen,
                        _ => 0,
                    };
                    Type::Other
                }
            };
            types.push(ty);
        }
        Ok(Btf {
            origin: origin.to_string(),
            strings,
            types,
            names,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn name_off(&self, name: &str) -> Option<u32> {
        // The string section is searched once per lookup; lookups happen a handful of
        // times at start-up, never on the sampling path.
        let needle = name.as_bytes();
        let mut at = 0;
        while at < self.strings.len() {
            let s = self.name(at as u32);
            if s == needle {
                return Some(at as u32);
            }
            at += s.len() + 1;
        }
        None
    }

    fn missing(&self, what: String) -> BtfError {
        BtfError::Missing {
            path: self.origin.clone(),
            what,
        }
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs and
    /// unions (the kernel wraps some `task_struct` fields in them).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let missing = || self.missing(format!("struct {name} member {member}"));
        let name_off = self.name_off(name).ok_or_else(missing)?;
        let ids = self.names.get(&(name_off, true)).ok_or_else(missing)?;
        ids.iter()
            .find_map(|&id| self.find_member(id, member.as_bytes(), 0))
            .map(|bits| bits / 8)
            .ok_or_else(missing)
    }

    /// The bit offset of `member` in type `id`, `depth` anonymous levels down. An offset
    /// past `u32` (only a broken blob has one) is no offset.
    fn find_member(&self, id: u32, member: &[u8], depth: u32) -> Option<u32> {
        let Some(Type::Composite { members }) = self.types.get(id as usize) else {
            return None;
        };
        members.iter().find_map(|m| {
            if m.name_off == 0 {
                if depth >= MAX_ANONYMOUS_DEPTH {
                    return None;
                }
                self.find_member(m.type_id, member, depth + 1)
                    .and_then(|inner| m.bit_offset.checked_add(inner))
            } else if self.name(m.name_off) == member {
                Some(m.bit_offset)
            } else {
                None
            }
        })
    }

    /// Value of the enumerator `value` in `enum name`.
    pub fn enum_value(&self, name: &str, value: &str) -> Result<i64, BtfError> {
        let missing = || self.missing(format!("enum {name} value {value}"));
        let name_off = self.name_off(name).ok_or_else(missing)?;
        let ids = self.names.get(&(name_off, false)).ok_or_else(missing)?;
        ids.iter()
            .find_map(|&id| match &self.types[id as usize] {
                Type::Enum { values } => values
                    .iter()
                    .find(|(n, _)| self.name(*n) == value.as_bytes())
                    .map(|&(_, v)| v),
                _ => None,
            })
            .ok_or_else(missing)
    }

    /// `offsetof(outer, member) + offsetof(inner, field)`: a field of a struct embedded by
    /// value, such as `task_struct.se.sum_exec_runtime`.
    pub fn nested_offset(
        &self,
        (outer, member): (&str, &str),
        (inner, field): (&str, &str),
    ) -> Result<u32, BtfError> {
        let base = self.member_offset(outer, member)?;
        let within = self.member_offset(inner, field)?;
        base.checked_add(within)
            .ok_or_else(|| BtfError::Inconsistent {
                path: self.origin.clone(),
                what: format!("struct {outer} member {member}.{field} is past 4 GiB"),
            })
    }

    /// `offsetof(struct css_set, subsys[<id>])` for a `cgroup_subsys_id` enumerator such
    /// as `memory_cgrp_id`.
    ///
    /// The id must be a slot of the array (below `CGROUP_SUBSYS_COUNT`): the offset goes to
    /// the kernel program, which would read past `css_set` with anything else.
    pub fn css_set_subsys_offset(&self, subsys_id: &str) -> Result<u32, BtfError> {
        let id = self.enum_value("cgroup_subsys_id", subsys_id)?;
        let count = self
            .enum_value("cgroup_subsys_id", "CGROUP_SUBSYS_COUNT")
            .unwrap_or(MAX_SUBSYS)
            .min(MAX_SUBSYS);
        let inconsistent = |what: String| BtfError::Inconsistent {
            path: self.origin.clone(),
            what,
        };
        if !(0..count).contains(&id) {
            return Err(inconsistent(format!(
                "enum cgroup_subsys_id value {subsys_id} = {id} is not below CGROUP_SUBSYS_COUNT ({count})"
            )));
        }
        let subsys = self.member_offset("css_set", "subsys")?;
        // id < 64: the product fits; the sum may not.
        subsys
            .checked_add(id as u32 * size_of::<u64>() as u32)
            .ok_or_else(|| {
                inconsistent(format!(
                    "struct css_set member subsys at {subsys} has no slot {id}"
                ))
            })
    }

    /// The offsets the CPU sampler walks from a `task_struct` to its cgroup id.
    pub fn task_offsets(&self, mode: CgroupMode) -> Result<TaskOffsets, BtfError> {
        Ok(TaskOffsets {
            task_pid: self.member_offset("task_struct", "pid")?,
            task_cgroups: self.member_offset("task_struct", "cgroups")?,
            css_set_dfl_cgrp: self.member_offset("css_set", "dfl_cgrp")?,
            css_set_cpu_subsys: self.css_set_subsys_offset("cpu_cgrp_id")?,
            css_cgroup: self.member_offset("cgroup_subsys_state", "cgroup")?,
            cgroup_kn: self.member_offset("cgroup", "kn")?,
            kn_id: self.member_offset("kernfs_node", "id")?,
            mode: mode as u32,
            css_set_memory_subsys: 0,
            memory_mode: CgroupMode::Unified as u32,
            cgroup_root: self.member_offset("cgroup", "root")?,
            root_hierarchy_id: self.member_offset("cgroup_root", "hierarchy_id")?,
            task_exec_runtime: self
                .nested_offset(("task_struct", "se"), ("sched_entity", "sum_exec_runtime"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: `struct outer { int a; union { int pad; long b; }; }` and
    /// `enum e { X = 0, Y = 7 }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0pad\0e\0X\0Y\0long\0".to_vec();
        let off = |s: &str| {
            let needle = [s.as_bytes(), b"\0"].concat();
            strings
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap() as u32
        };
        let mut types: Vec<u32> = Vec::new();
        // 1: int
        types.extend([off("int"), KIND_INT << 24, 4, 32]);
        // 2: long
        types.extend([off("long"), KIND_INT << 24, 8, 64]);
        // 3: anonymous union { int pad; long b; }
        types.extend([0, KIND_UNION << 24 | 2, 8]);
        types.extend([off("pad"), 1, 0, off("b"), 2, 0]);
        // 4: struct outer { int a @0; <anon union> @64 bits }
        types.extend([off("outer"), KIND_STRUCT << 24 | 2, 16]);
        types.extend([off("a"), 1, 0, 0, 3, 64]);
        // 5: enum e { X = 0, Y = 7 }
        types.extend([off("e"), KIND_ENUM << 24 | 2, 4]);
        types.extend([off("X"), 0, off("Y"), 7]);
        let type_bytes: Vec<u8> = types.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(BTF_MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    #[test]
    fn resolves_members_through_anonymous_unions() {
        let btf = Btf::parse(&blob(), "test").unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 8);
        assert_eq!(btf.enum_value("e", "Y").unwrap(), 7);
    }

    #[test]
    fn missing_names_are_one_line_errors() {
        let btf = Btf::parse(&blob(), "test").unwrap();
        let err = btf.member_offset("outer", "nope").unwrap_err().to_string();
        assert_eq!(
            err,
            "test: kernel BTF has no struct outer member nope; this kernel is not supported"
        );
        assert!(btf.enum_value("e", "Z").is_err());
        assert!(Btf::parse(b"garbage-garbage-garbage-garbage", "x").is_err());
    }

    /// `blob()` with its string section grown by `extra` names and its type section by
    /// `types` (ids from 6 on).
    fn blob_with(extra: &[u8], types: &[u32]) -> Vec<u8> {
        let base = blob();
        let hdr = |i: usize| u32::from_le_bytes(base[4 + 4 * i..8 + 4 * i].try_into().unwrap());
        let (type_len, str_len) = (hdr(2) as usize, hdr(4) as usize);
        let mut type_bytes = base[24..24 + type_len].to_vec();
        type_bytes.extend(types.iter().flat_map(|v| v.to_le_bytes()));
        let mut strings = base[24 + type_len..24 + type_len + str_len].to_vec();
        strings.extend_from_slice(extra);
        let mut out = base[..8].to_vec();
        for v in [
            0u32,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    /// Offset of the string `name` in `blob()`'s strings grown by `extra`.
    fn string_at(extra: &[u8], name: &str) -> u32 {
        let base = b"\0int\0outer\0a\0b\0pad\0e\0X\0Y\0long\0";
        let all = [&base[..], extra].concat();
        let needle = [b"\0", name.as_bytes(), b"\0"].concat();
        all.windows(needle.len()).position(|w| w == needle).unwrap() as u32 + 1
    }

    #[test]
    fn an_anonymous_member_that_contains_itself_ends_the_search() {
        // 6: struct loop { <anonymous: struct loop> @0 }: the search recursed until the
        // stack overflowed.
        let extra = b"loop\0";
        let name = string_at(extra, "loop");
        let btf = Btf::parse(
            &blob_with(extra, &[name, KIND_STRUCT << 24 | 1, 8, 0, 6, 0]),
            "test",
        )
        .unwrap();
        let err = btf.member_offset("loop", "x").unwrap_err().to_string();
        assert_eq!(
            err,
            "test: kernel BTF has no struct loop member x; this kernel is not supported"
        );
    }

    #[test]
    fn member_offsets_past_u32_are_not_offsets() {
        // 6: struct big { <anonymous: struct outer> @ u32::MAX - 63 bits }: outer's `a` is
        // there, its `b` (64 bits further) would be past u32 (the sum overflowed).
        let extra = b"big\0";
        let name = string_at(extra, "big");
        let btf = Btf::parse(
            &blob_with(
                extra,
                &[name, KIND_STRUCT << 24 | 1, 8, 0, 4, u32::MAX - 63],
            ),
            "test",
        )
        .unwrap();
        assert_eq!(btf.member_offset("big", "a").unwrap(), (u32::MAX - 63) / 8);
        assert!(btf.member_offset("big", "b").is_err());
    }

    #[test]
    fn a_subsystem_id_must_be_a_slot_of_css_set() {
        // 6: struct css_set { int subsys @64 }; 7: enum cgroup_subsys_id with a huge id (the
        // fuzzer's: `id * 8` overflowed) and one past the count (read past css_set).
        let extra = b"css_set\0subsys\0cgroup_subsys_id\0cpu_cgrp_id\0huge_id\0late_id\0CGROUP_SUBSYS_COUNT\0";
        let s = |n| string_at(extra, n);
        let types = [
            s("css_set"),
            KIND_STRUCT << 24 | 1,
            16,
            s("subsys"),
            1,
            64,
            s("cgroup_subsys_id"),
            KIND_ENUM << 24 | 4,
            4,
            s("cpu_cgrp_id"),
            1,
            s("huge_id"),
            0x2000_0001,
            s("late_id"),
            5,
            s("CGROUP_SUBSYS_COUNT"),
            5,
        ];
        let btf = Btf::parse(&blob_with(extra, &types), "test").unwrap();
        assert_eq!(btf.css_set_subsys_offset("cpu_cgrp_id").unwrap(), 8 + 8);
        for id in ["huge_id", "late_id"] {
            let err = btf.css_set_subsys_offset(id).unwrap_err().to_string();
            assert!(
                err.starts_with("test: kernel BTF is inconsistent: enum cgroup_subsys_id value"),
                "{err}"
            );
        }
    }

    #[test]
    fn reads_the_running_kernel() {
        let btf = Btf::from_sys_fs().expect("this host has BTF");
        let v1 = btf.task_offsets(CgroupMode::V1Cpu).unwrap();
        assert!(v1.task_cgroups > v1.task_pid);
        assert_eq!(v1.mode, CgroupMode::V1Cpu as u32);
        // cpu_cgrp_id is the second subsystem on every kernel that has cpuset.
        assert_eq!(
            btf.enum_value("cgroup_subsys_id", "cpu_cgrp_id").unwrap(),
            1
        );
    }
}
