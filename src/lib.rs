//! argocd-image-pr: a GitOps pull-request bot for Argo CD.
//!
//! Pure decisions (`annotations`, `strategy`, `manifest`, `discovery`, `output`) and drivers at
//! the edges (`registry`, `git`), joined by the `engine`.

mod annotations;
mod commands;
mod config;
mod discovery;
mod domain;
mod engine;
pub mod forge;
mod forge_local;
mod git;
mod manifest;
mod ports;
pub mod output;
mod registry;
pub mod server;
mod strategy;
mod templates;

pub use commands::{Command, CommandError, CommandName, format_help, help_list, parse_comment};
pub use config::{ConfigError, ConfigFile};
pub use domain::{AppId, ImageName, ImageReference, Platform};
pub use engine::{AppReport, ImageReport, LocationError, PlanOptions, PlanReport, Stats, plan};
pub use registry::RegistrySettings;
