//! pgscope
#![warn(missing_docs)]
mod fingerprint;
pub use fingerprint::{fingerprint, Fingerprint};
