//! daft as a library: the binary is a thin shell over these modules.
// Config errors carry their source text and span to render them; they are built once, on the
// way out, so their size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod apply;
pub mod archive;
pub mod autostop;
pub mod bootstrap;
pub mod build;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cost;
pub mod error;
pub mod git;
pub mod https;
pub mod interrupt;
pub mod keys;
pub mod kube_api;
pub mod kuberay;
pub mod launch;
pub mod lock;
pub mod logging;
pub mod model;
pub mod paths;
pub mod planner;
pub mod printer;
pub mod provider;
pub mod registry;
pub mod scheduler;
pub mod setup;
pub mod shell;
pub mod sweep;
pub mod templates;
pub mod time;
pub mod transport;
pub mod ui;
pub mod wait;
