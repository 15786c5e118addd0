//! daft as a library: the binary is a thin shell over these modules.

pub mod apply;
pub mod archive;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod keys;
pub mod logging;
pub mod model;
pub mod planner;
pub mod provider;
pub mod templates;
pub mod transport;
pub mod ui;
