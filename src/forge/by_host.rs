//! One run across forges: every repository goes to the forge configured for its git host
//! (config `forges:`), so GitOps repositories on GitHub and GitLab are served by one process.
//! A host no entry names goes to the fallback forge (`--forge`), or fails by name.

use chrono::{DateTime, Utc};

use super::{GithubForge, GitlabForge, LocalForge};
use crate::ports::{
    AccessLevel, Comment, Forge, ForgeError, ForgeErrorKind, ForgeWords, MergeMethod, NewPullRequest, PrUpdate, PullRequest, PushTarget,
    Reaction, RepoRef, Reviewer,
};

/// Any of the drivers, chosen at run time.
pub enum AnyForge {
    Github(Box<GithubForge>),
    Gitlab(Box<GitlabForge>),
    Local(LocalForge),
}

/// The forge for each git host.
pub struct ByHost {
    /// (host, forge); hosts compared without regard to case.
    routes: Vec<(String, AnyForge)>,
    fallback: Option<AnyForge>,
}

impl ByHost {
    pub fn new(routes: Vec<(String, AnyForge)>, fallback: Option<AnyForge>) -> ByHost {
        ByHost { routes, fallback }
    }

    fn pick(&self, repo: &RepoRef) -> Result<&AnyForge, ForgeError> {
        self.routes
            .iter()
            .find(|(host, _)| host.eq_ignore_ascii_case(&repo.host))
            .map(|(_, f)| f)
            .or(self.fallback.as_ref())
            .ok_or_else(|| ForgeError {
                forge: "forges",
                repo: repo.to_string(),
                kind: ForgeErrorKind::NotFound,
                message: format!("no forge is configured for the git host {:?}: add it to `forges:` in --config", repo.host),
            })
    }
}

/// Calls `$call` on whichever driver `$self` picks for `$repo`.
macro_rules! on_forge {
    ($self:ident, $repo:ident, |$f:ident| $call:expr) => {
        match $self.pick($repo)? {
            AnyForge::Github($f) => $call.await,
            AnyForge::Gitlab($f) => $call.await,
            AnyForge::Local($f) => $call.await,
        }
    };
}

impl Forge for ByHost {
    fn kind(&self) -> &'static str {
        "forges"
    }

    fn words(&self, repo: &RepoRef) -> ForgeWords {
        match self.pick(repo) {
            Ok(AnyForge::Github(f)) => f.words(repo),
            Ok(AnyForge::Gitlab(f)) => f.words(repo),
            Ok(AnyForge::Local(f)) => f.words(repo),
            Err(_) => ForgeWords::default(),
        }
    }

    fn push_target(&self, repo: &RepoRef) -> PushTarget {
        match self.pick(repo) {
            Ok(AnyForge::Github(f)) => f.push_target(repo),
            Ok(AnyForge::Gitlab(f)) => f.push_target(repo),
            Ok(AnyForge::Local(f)) => f.push_target(repo),
            // Read as it is, without credentials; pushing asks `authorized_push_target`, which fails.
            Err(_) => PushTarget { url: repo.url.clone(), username: None, password: None },
        }
    }

    async fn authorized_push_target(&self, repo: &RepoRef) -> Result<PushTarget, ForgeError> {
        on_forge!(self, repo, |f| f.authorized_push_target(repo))
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        on_forge!(self, repo, |f| f.default_branch(repo))
    }

    async fn list_pull_requests(&self, repo: &RepoRef, head_prefix: &str) -> Result<Vec<PullRequest>, ForgeError> {
        on_forge!(self, repo, |f| f.list_pull_requests(repo, head_prefix))
    }

    async fn create_pull_request(&self, repo: &RepoRef, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        on_forge!(self, repo, |f| f.create_pull_request(repo, pr))
    }

    async fn update_pull_request(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        on_forge!(self, repo, |f| f.update_pull_request(repo, number, update))
    }

    async fn list_comments(&self, repo: &RepoRef, number: u64) -> Result<Vec<Comment>, ForgeError> {
        on_forge!(self, repo, |f| f.list_comments(repo, number))
    }

    async fn list_repo_comments(&self, repo: &RepoRef, since: Option<DateTime<Utc>>) -> Result<Vec<Comment>, ForgeError> {
        on_forge!(self, repo, |f| f.list_repo_comments(repo, since))
    }

    async fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Result<Comment, ForgeError> {
        on_forge!(self, repo, |f| f.create_comment(repo, number, body))
    }

    async fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        on_forge!(self, repo, |f| f.add_labels(repo, number, labels))
    }

    async fn request_reviewers(&self, repo: &RepoRef, number: u64, reviewers: &[Reviewer]) -> Result<(), ForgeError> {
        on_forge!(self, repo, |f| f.request_reviewers(repo, number, reviewers))
    }

    async fn add_assignees(&self, repo: &RepoRef, number: u64, users: &[String]) -> Result<(), ForgeError> {
        on_forge!(self, repo, |f| f.add_assignees(repo, number, users))
    }

    async fn enable_auto_merge(&self, repo: &RepoRef, number: u64, method: MergeMethod) -> Result<(), ForgeError> {
        on_forge!(self, repo, |f| f.enable_auto_merge(repo, number, method))
    }

    async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        on_forge!(self, repo, |f| f.delete_branch(repo, branch))
    }

    async fn access_level(&self, repo: &RepoRef, user: &str) -> Result<AccessLevel, ForgeError> {
        on_forge!(self, repo, |f| f.access_level(repo, user))
    }

    async fn add_reaction(&self, repo: &RepoRef, number: u64, comment_id: u64, reaction: Reaction) -> Result<(), ForgeError> {
        on_forge!(self, repo, |f| f.add_reaction(repo, number, comment_id, reaction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_repository_goes_to_the_forge_of_its_host_and_an_unknown_host_fails_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let local = || AnyForge::Local(LocalForge::new(dir.path(), "argocd-image-pr"));
        let forges = ByHost::new(vec![("GitLab.Example.com".into(), local())], None);
        let on_gitlab = RepoRef::from_url("https://gitlab.example.com/group/sub/gitops.git").unwrap();
        assert!(matches!(forges.pick(&on_gitlab), Ok(AnyForge::Local(_))), "hosts compare without case");
        let elsewhere = RepoRef::from_url("https://github.com/org/gitops.git").unwrap();
        let err = forges.authorized_push_target(&elsewhere).await.unwrap_err();
        assert_eq!(err.kind, ForgeErrorKind::NotFound);
        assert!(err.to_string().contains("github.com") && err.to_string().contains("forges:"), "{err}");
        assert_eq!(forges.push_target(&elsewhere).password, None, "no credentials for a host nobody configured");
        let with_fallback = ByHost::new(vec![], Some(local()));
        assert!(with_fallback.pick(&elsewhere).is_ok());
    }
}
