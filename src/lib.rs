//! argocd-image-pr: a GitOps pull-request bot for Argo CD.
//!
//! Pure decisions (`annotations`, `strategy`, `manifest`, `discovery`, `output`) and drivers at
//! the edges (`registry`, `git`), joined by the `engine`.

mod annotations;
mod config;
mod discovery;
mod domain;
mod engine;
mod forge_local;
mod git;
mod manifest;
mod planner;
mod ports;
pub mod output;
mod registry;
mod strategy;
mod templates;

pub use config::{ConfigError, ConfigFile};
pub use domain::{AppId, ImageName, ImageReference, Platform};
pub use engine::{AppReport, ImageReport, LocationError, PlanOptions, PlanReport, Stats, plan};
pub use registry::RegistrySettings;
