//! enforcer's kernel programs. Built for `bpfel-unknown-none` by `enforcer/build.rs`.
#![no_std]
#![no_main]

mod cgroups;
mod cpu;
mod net;
mod reclaim;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this never runs.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
