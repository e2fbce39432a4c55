//! argocd-image-pr: a GitOps pull-request bot for Argo CD.
//!
//! Pure decisions (`annotations`, `strategy`, `manifest`, `discovery`) and drivers at the edges
//! (`registry`, `git`), joined by the `engine`.

mod annotations;
mod discovery;
mod domain;
mod engine;
mod git;
mod manifest;
mod registry;
mod strategy;

pub use domain::{AppId, ImageName, ImageReference, Platform};
pub use engine::{plan, PlanOptions, PlanReport};
pub use registry::RegistrySettings;
