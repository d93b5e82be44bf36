//! The `moat` command line.
