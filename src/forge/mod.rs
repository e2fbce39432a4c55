//! Forge drivers: the servers the bot opens pull requests on. Each driver implements
//! [`Forge`](crate::ports::Forge) and converts its vendor JSON into the ports' types at its edge;
//! nothing vendor-shaped leaves a driver's module.

pub mod github;
pub mod gitlab;
mod layered;
pub mod local;

pub use crate::ports::{
    AccessLevel, Comment, Forge, ForgeError, ForgeErrorKind, MergeMethod, NewPullRequest, PrState, PrUpdate, PullRequest,
    PushTarget, Reaction, RepoRef, Reviewer,
};
pub use github::{GithubAuth, GithubForge, GithubSettings, GithubStats};
pub use gitlab::{GitlabForge, GitlabSettings, GitlabStats};
pub use layered::{Counted, Counting, ForgeCall, ForgeHook, Layered};
pub use local::LocalForge;
