//! Who is asking, and may they: API tokens and role-based access decisions.
//!
//! Pure logic: token material comes from an injected random source, and
//! decisions are made over role bindings and teams the caller read from the
//! catalog. The server and the CLI share it, so every door enforces the same
//! rules.

pub mod decide;
pub mod token;

pub use decide::{Decision, Policy, Request, Target};
pub use token::{IssuedToken, TokenError};
