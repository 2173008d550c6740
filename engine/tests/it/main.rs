//! Integration tests: one module per failure class of DEVELOPERS.md.

mod smoke;
mod support;
