//! Reading a whole per-CPU hash map with `BPF_MAP_LOOKUP_BATCH`.
//!
//! aya iterates maps one key at a time (two syscalls per entry). A polling agent's cost is
//! one open/read/close per cgroup file; reading the map in batches of thousands of entries
//! per syscall is what makes the eBPF path an order of magnitude cheaper.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `BPF_MAP_LOOKUP_BATCH` from `include/uapi/linux/bpf.h`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads a whole `u64 -> per-CPU V` hash map with `BPF_MAP_LOOKUP_BATCH`, thousands of
/// entries per syscall, where aya's iteration costs two syscalls per entry.
///
/// `V` must be plain data whose size is a multiple of 8: the kernel lays out each CPU's
/// value rounded up to 8 bytes, so the buffer is then exactly `[V; cpus]` per entry.
pub struct PerCpuReader<V> {
    cpus: usize,
    chunk: usize,
    keys: Vec<u64>,
    values: Vec<V>,
}

impl<V: aya::Pod + Default> PerCpuReader<V> {
    const LAYOUT_OK: () = assert!(size_of::<V>().is_multiple_of(8) && size_of::<V>() > 0);

    /// `cpus` is the number of *possible* CPUs.
    pub fn new(cpus: usize, chunk: usize) -> Self {
        let () = Self::LAYOUT_OK;
        PerCpuReader {
            cpus,
            chunk,
            keys: vec![0; chunk],
            values: vec![V::default(); chunk * cpus],
        }
    }

    /// Calls `each(key, per-CPU values)` for every entry of the map.
    pub fn read(&mut self, map: BorrowedFd<'_>, mut each: impl FnMut(u64, &[V])) -> io::Result<()> {
        let mut token: u64 = 0;
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &token as *const u64 as u64
                },
                out_batch: &mut token as *mut u64 as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: self.chunk as u32,
                map_fd: map.as_raw_fd() as u32,
                ..Default::default()
            };
            // SAFETY: the attribute points at buffers sized for `count` entries of a u64 key
            // and `cpus` values of `V` (8-byte multiple, checked above) each; the kernel
            // writes at most that much.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    size_of::<BatchAttr>() as u32,
                )
            };
            let done = if rc < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    // A hash bucket holds more entries than fit: grow and retry the same batch.
                    Some(libc::ENOSPC) => {
                        self.chunk *= 2;
                        self.keys.resize(self.chunk, 0);
                        self.values.resize(self.chunk * self.cpus, V::default());
                        continue;
                    }
                    // End of map; `count` still reports the entries of the last batch.
                    Some(libc::ENOENT) => true,
                    _ => return Err(err),
                }
            } else {
                false
            };
            for i in 0..attr.count as usize {
                each(
                    self.keys[i],
                    &self.values[i * self.cpus..(i + 1) * self.cpus],
                );
            }
            if done {
                return Ok(());
            }
            first = false;
        }
    }
}

/// Reusable buffers for reading a `u64 -> per-CPU u64` hash map (the CPU sampler's), summed
/// over CPUs.
pub struct PerCpuU64Reader(PerCpuReader<u64>);

impl PerCpuU64Reader {
    /// `cpus` is the number of *possible* CPUs: the kernel lays out one value per possible
    /// CPU (each rounded up to 8 bytes, which a u64 already is).
    pub fn new(cpus: usize) -> Self {
        Self::with_chunk(cpus, 4096)
    }

    pub fn with_chunk(cpus: usize, chunk: usize) -> Self {
        PerCpuU64Reader(PerCpuReader::new(cpus, chunk))
    }

    /// Calls `each(key, sum over CPUs)` for every entry of the map.
    pub fn read(&mut self, map: BorrowedFd<'_>, mut each: impl FnMut(u64, u64)) -> io::Result<()> {
        self.0
            .read(map, |key, per_cpu| each(key, per_cpu.iter().sum()))
    }
}
