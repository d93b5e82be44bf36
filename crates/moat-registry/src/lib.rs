//! placeholder: owner fills in
