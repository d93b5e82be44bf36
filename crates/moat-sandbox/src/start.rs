//! The `moat` binary's entry point, `moat_start`, run before the C library's `_start`.
//!
//! `moat` is a static PIE: before `main`, the C library's start-up writes the load address into
//! every pointer of the binary's own data (its relative relocations: the `.data.rel.ro`, the GOT,
//! `.data`), about 300 KB. Each page of those is a private mapping of the file, so the first
//! write to it is a copy-on-write page fault: 78 of the 229 page faults of `moat run`'s main
//! process, every session, on the path to the sandbox (the init is forked after them). In this
//! host's VM a page fault costs about 2 µs, far more than on bare metal.
//!
//! `moat_start` asks for those pages in one `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) and then
//! jumps to `_start`, which goes on as if it had been the entry point. The kernel copies the
//! pages in one call, without a fault per page: `moat run -- true` takes 85 to 105 fewer page
//! faults (all its processes: 235 against 340, means of 100 runs; later 257 against 342, of
//! 50), and 0.36, 0.46 and 0.76 ms less (medians of 500 interleaved runs in spells of 5, 12 and
//! 17% steal; BENCHMARKS.md, sandbox notes of 2026-12-03). Address randomization is unchanged:
//! the binary is still relocated where the kernel loaded it, only its pages are faulted in
//! first. (Faulting in the code the same way, `MADV_POPULATE_READ` over 14 MB, made it 0.8 ms
//! slower: most of it is never run.)
//!
//! The range is from the page of `__init_array_start` (where the data made read-only after
//! relocation begins, `.init_array` onwards) to `_edata` (the end of `.data`), both defined by
//! the linker; they are reached relative to the instruction pointer, so this code needs no
//! relocation itself. Anything wrong with the call (an older kernel: `EINVAL`) only leaves the
//! pages to be faulted in as before: its result is not looked at.
//!
//! `crates/moat-cli/build.rs` makes `moat_start` the entry point of the `moat` binary only;
//! other binaries that link this crate keep `_start`.

// SAFETY: `moat_start` runs as the process's first instruction, with the stack and registers
// set up for `_start`: it touches no memory and no stack, and makes one system call, which
// clobbers `rax`, `rcx` and `r11` (and its arguments in `rdi`, `rsi`, `rdx`). `_start` relies on
// none of them but `rdx`, a function for `atexit` (0 from the kernel for a static executable,
// the dynamic loader's `_dl_fini` for a dynamic one), which is kept in `r8` across the call and
// put back before the jump; `_start` sets `r8` itself. `madvise(MADV_POPULATE_WRITE)` over the
// process's own writable data changes no contents: it only takes now the faults that the first
// writes would take.
#[allow(unsafe_code)]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod entry {
    core::arch::global_asm!(
        ".globl moat_start",
        ".type moat_start, @function",
        "moat_start:",
        "mov r8, rdx",
        "lea rdi, [rip + __init_array_start]",
        "and rdi, -4096",
        "lea rsi, [rip + _edata]",
        "sub rsi, rdi",
        "mov edx, 23", // MADV_POPULATE_WRITE
        "mov eax, 28", // SYS_madvise
        "syscall",
        "mov rdx, r8",
        "jmp _start",
        ".size moat_start, . - moat_start",
    );
}
