//! The PyPI simple repository API (PEP 503 HTML, PEP 691 JSON): request paths, project pages
//! read from upstream and rendered for clients. (Being written.)
