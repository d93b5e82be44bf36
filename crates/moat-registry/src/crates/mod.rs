//! The cargo sparse registry protocol: request paths, index files, `config.json`. (Being written.)
