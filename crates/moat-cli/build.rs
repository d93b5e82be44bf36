//! Links the `moat` binary with `moat_start` as its entry point on x86-64 Linux: it faults in the
//! pages the static PIE's start-up relocates in one system call, then jumps to the C library's
//! `_start` (`crates/moat-sandbox/src/start.rs`). Other targets keep `_start`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if target("CARGO_CFG_TARGET_ARCH") == "x86_64" && target("CARGO_CFG_TARGET_OS") == "linux" {
        // `--undefined` has the linker take `moat_start` from moat-sandbox's archive whichever
        // object of it the symbol lands in.
        println!("cargo:rustc-link-arg-bin=moat=-Wl,--undefined=moat_start");
        println!("cargo:rustc-link-arg-bin=moat=-Wl,--entry=moat_start");
    }
}
