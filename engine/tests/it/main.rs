//! Integration tests: one module per failure class of DEVELOPERS.md.

mod bad_input;
mod bounds;
mod capture;
mod clocks;
mod deletes;
mod durability;
mod ids;
mod layout;
mod locks;
mod merge;
mod natural_keys;
mod pg;
mod smoke;
mod status;
mod support;
mod upgrade;
