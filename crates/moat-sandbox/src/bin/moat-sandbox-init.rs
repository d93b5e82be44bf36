//! A stand-alone sandbox init, for the crate's tests and for embedding without `moat`:
//! `moat-sandbox-init __sandbox-init` is what `moat __sandbox-init` is.

fn main() {
    if std::env::args().nth(1).as_deref() == Some(moat_sandbox::INIT_SUBCOMMAND) {
        moat_sandbox::init_main();
    }
    std::process::exit(2);
}
