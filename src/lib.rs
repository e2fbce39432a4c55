//! argocd-image-pr: a GitOps pull-request bot for Argo CD.
//!
//! Pure decisions (`annotations`, `strategy`, `manifest`, `discovery`, `output`) and drivers at
//! the edges (`registry`, `git`), joined by the `engine`.

mod annotations;
mod commands;
mod config;
pub mod daemon;
mod discovery;
mod domain;
mod engine;
pub mod forge;
mod git;
mod http;
mod manifest;
mod planner;
mod ports;
pub mod output;
mod registry;
pub mod server;
mod strategy;
mod templates;

pub use commands::{Command, CommandError, CommandName, format_help, help_list, parse_comment};
pub use config::{ConfigError, ConfigFile, Identity};
pub use forge::LocalForge;
pub use git::push::Identity as GitIdentity;
pub use planner::DEFAULT_BRANCH_TEMPLATE;
pub use ports::RepoRef;
pub use templates::Templates;
pub use domain::{AppId, ImageName, ImageReference, Platform};
pub use engine::{
    AppReport, ImageReport, LocationError, Mode, PlanOptions, PlanReport, RunAction, RunAppReport, RunOptions, RunReport,
    RunStats, Stats, plan, run_once,
};
pub use registry::RegistrySettings;
pub use git::set_timeouts as set_git_timeouts;
