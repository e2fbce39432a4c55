//! argocd-image-pr: a GitOps pull-request bot for Argo CD.
//!
//! Pure decisions (`annotations`, `strategy`, `manifest`, `discovery`, `planner`, `commands`,
//! `templates`) over a repository's `files` and their `yaml` trees; the `ports` the `engine`
//! talks through; drivers behind them (`registry`, `git`, `forge`, `discovery::Locations`),
//! built once in `main` (`Drivers`). docs/architecture.md has the picture; `layers` checks it.

mod annotations;
mod cache_file;
mod cluster;
mod commands;
mod config;
pub mod daemon;
mod discovery;
mod drivers;
mod domain;
mod engine;
mod error;
mod files;
pub mod forge;
mod git;
mod http;
mod image_updater;
#[cfg(test)]
mod layers;
mod manifest;
mod metadata;
mod planner;
mod ports;
pub mod output;
mod registry;
pub mod server;
mod strategy;
mod templates;
mod yaml;

pub use commands::{Command, CommandError, CommandName, format_help, help_list, parse_comment};
pub use config::{ConfigError, ConfigFile, ForgeEntry, Identity};
pub use forge::LocalForge;
pub use git::push::Identity as GitIdentity;
pub use planner::DEFAULT_BRANCH_TEMPLATE;
pub use ports::RepoRef;
pub use templates::Templates;
pub use domain::{AppId, ImageName, ImageReference, Platform};
pub use engine::{
    AppReport, Drivers, ImageReport, LocationError, Mode, PlanOptions, PlanReport, RunAction, RunAppReport, RunOptions, RunReport,
    RunStats, Stats, plan, run_once,
};
pub use registry::RegistrySettings;
pub use cluster::ClusterSettings;
pub use git::set_timeouts as set_git_timeouts;
