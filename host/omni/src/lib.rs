//! # omni (library): the server as a function, and its configuration
//!
//! What the `omni` binary runs as `omni serve`, for callers that need a server without a
//! process (tests, embedders): [`serve`] over a [`config::Config`] and a listener, until a
//! shutdown future completes. The binary adds the command line, signals and logging.
//!
//! # Layout
//! - [`config`]: the TOML configuration, its defaults, and the environment's overrides.
//! - [`serve`], [`auth`]: the server.
//! - [`http`]: serving connections: their caps and timeouts, and the stop.

pub mod config;
pub mod http;
mod server;

pub use server::{auth, serve};
