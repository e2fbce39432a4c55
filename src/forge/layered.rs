//! One wrapper for every forge: [`Layered`] implements [`Forge`] once, forwarding each call to
//! the forge inside and calling a small [`ForgeHook`] before and after it. Cross-cutting concerns
//! (the run's call counts, fault injection in tests) are hooks, so none of them re-implements
//! the whole trait, and a method added to [`Forge`] is added here once.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::ports::{
    AccessLevel, Comment, Forge, ForgeError, ForgeWords, MergeMethod, NewPullRequest, PrUpdate, PullRequest, PushTarget, Reaction,
    RepoRef, Reviewer,
};

/// A call to a forge, named by its [`Forge`] method. `kind` and `push_target` are not calls:
/// they answer from what the driver knows, without asking its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForgeCall {
    AuthorizedPushTarget,
    DefaultBranch,
    ListPullRequests,
    CreatePullRequest,
    UpdatePullRequest,
    ListComments,
    ListRepoComments,
    CreateComment,
    AddLabels,
    RequestReviewers,
    AddAssignees,
    EnableAutoMerge,
    DeleteBranch,
    AccessLevel,
    AddReaction,
}

impl ForgeCall {
    /// Whether the call changes something on the forge (pull requests, comments, labels,
    /// reviewers, assignees, auto-merge, branches, reactions).
    pub fn writes(self) -> bool {
        match self {
            ForgeCall::AuthorizedPushTarget
            | ForgeCall::DefaultBranch
            | ForgeCall::ListPullRequests
            | ForgeCall::ListComments
            | ForgeCall::ListRepoComments
            | ForgeCall::AccessLevel => false,
            ForgeCall::CreatePullRequest
            | ForgeCall::UpdatePullRequest
            | ForgeCall::CreateComment
            | ForgeCall::AddLabels
            | ForgeCall::RequestReviewers
            | ForgeCall::AddAssignees
            | ForgeCall::EnableAutoMerge
            | ForgeCall::DeleteBranch
            | ForgeCall::AddReaction => true,
        }
    }
}

/// What a [`Layered`] forge does around each call.
pub trait ForgeHook: Send + Sync {
    /// Before `call` on `repo`. An error is the call's answer: the forge inside is not asked.
    fn before(&self, call: ForgeCall, repo: &RepoRef) -> Result<(), ForgeError> {
        let _ = (call, repo);
        Ok(())
    }

    /// After the forge inside answered `call` (`succeeded`: with `Ok`). An error replaces the
    /// answer, whatever it was (a change made whose answer is then lost, in tests).
    fn after(&self, call: ForgeCall, repo: &RepoRef, succeeded: bool) -> Result<(), ForgeError> {
        let _ = (call, repo, succeeded);
        Ok(())
    }
}

/// A forge with a [`ForgeHook`] around every call of the forge it borrows.
pub struct Layered<'a, F: Forge, H: ForgeHook> {
    inner: &'a F,
    hook: H,
}

impl<'a, F: Forge, H: ForgeHook> Layered<'a, F, H> {
    pub fn with_hook(inner: &'a F, hook: H) -> Self {
        Layered { inner, hook }
    }

    pub fn hook(&self) -> &H {
        &self.hook
    }

    async fn around<T>(
        &self,
        call: ForgeCall,
        repo: &RepoRef,
        answer: impl Future<Output = Result<T, ForgeError>>,
    ) -> Result<T, ForgeError> {
        self.hook.before(call, repo)?;
        let answer = answer.await;
        self.hook.after(call, repo, answer.is_ok())?;
        answer
    }
}

impl<'a, F: Forge, H: ForgeHook + Default> Layered<'a, F, H> {
    pub fn new(inner: &'a F) -> Self {
        Layered::with_hook(inner, H::default())
    }
}

impl<F: Forge, H: ForgeHook> Forge for Layered<'_, F, H> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn words(&self, repo: &RepoRef) -> ForgeWords {
        self.inner.words(repo)
    }

    fn push_target(&self, repo: &RepoRef) -> PushTarget {
        self.inner.push_target(repo)
    }

    async fn authorized_push_target(&self, repo: &RepoRef) -> Result<PushTarget, ForgeError> {
        self.around(ForgeCall::AuthorizedPushTarget, repo, self.inner.authorized_push_target(repo)).await
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        self.around(ForgeCall::DefaultBranch, repo, self.inner.default_branch(repo)).await
    }

    async fn list_pull_requests(&self, repo: &RepoRef, head_prefix: &str) -> Result<Vec<PullRequest>, ForgeError> {
        self.around(ForgeCall::ListPullRequests, repo, self.inner.list_pull_requests(repo, head_prefix)).await
    }

    async fn create_pull_request(&self, repo: &RepoRef, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        self.around(ForgeCall::CreatePullRequest, repo, self.inner.create_pull_request(repo, pr)).await
    }

    async fn update_pull_request(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        self.around(ForgeCall::UpdatePullRequest, repo, self.inner.update_pull_request(repo, number, update)).await
    }

    async fn list_comments(&self, repo: &RepoRef, number: u64) -> Result<Vec<Comment>, ForgeError> {
        self.around(ForgeCall::ListComments, repo, self.inner.list_comments(repo, number)).await
    }

    async fn list_repo_comments(&self, repo: &RepoRef, since: Option<DateTime<Utc>>) -> Result<Vec<Comment>, ForgeError> {
        self.around(ForgeCall::ListRepoComments, repo, self.inner.list_repo_comments(repo, since)).await
    }

    async fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Result<Comment, ForgeError> {
        self.around(ForgeCall::CreateComment, repo, self.inner.create_comment(repo, number, body)).await
    }

    async fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        self.around(ForgeCall::AddLabels, repo, self.inner.add_labels(repo, number, labels)).await
    }

    async fn request_reviewers(&self, repo: &RepoRef, number: u64, reviewers: &[Reviewer]) -> Result<(), ForgeError> {
        self.around(ForgeCall::RequestReviewers, repo, self.inner.request_reviewers(repo, number, reviewers)).await
    }

    async fn add_assignees(&self, repo: &RepoRef, number: u64, users: &[String]) -> Result<(), ForgeError> {
        self.around(ForgeCall::AddAssignees, repo, self.inner.add_assignees(repo, number, users)).await
    }

    async fn enable_auto_merge(&self, repo: &RepoRef, number: u64, method: MergeMethod) -> Result<(), ForgeError> {
        self.around(ForgeCall::EnableAutoMerge, repo, self.inner.enable_auto_merge(repo, number, method)).await
    }

    async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        self.around(ForgeCall::DeleteBranch, repo, self.inner.delete_branch(repo, branch)).await
    }

    async fn access_level(&self, repo: &RepoRef, user: &str) -> Result<AccessLevel, ForgeError> {
        self.around(ForgeCall::AccessLevel, repo, self.inner.access_level(repo, user)).await
    }

    async fn add_reaction(&self, repo: &RepoRef, number: u64, comment_id: u64, reaction: Reaction) -> Result<(), ForgeError> {
        self.around(ForgeCall::AddReaction, repo, self.inner.add_reaction(repo, number, comment_id, reaction)).await
    }
}

/// Counts the forge calls a run makes (the benchmark and `--output json` show them) and which
/// of them write.
#[derive(Debug, Default)]
pub struct Counting {
    calls: AtomicU64,
    writes: AtomicU64,
}

impl Counting {
    /// Every forge API call (reads and writes).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The calls that change something.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl ForgeHook for Counting {
    fn before(&self, call: ForgeCall, _repo: &RepoRef) -> Result<(), ForgeError> {
        // Push credentials are not an API call of the run's: a driver asks its server only when
        // a token must be minted.
        if call == ForgeCall::AuthorizedPushTarget {
            return Ok(());
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        if call.writes() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The forge a run talks to: every call counted.
pub type Counted<'a, F> = Layered<'a, F, Counting>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::LocalForge;
    use crate::ports::ForgeErrorKind;

    fn setup() -> (tempfile::TempDir, LocalForge, RepoRef) {
        let dir = tempfile::tempdir().unwrap();
        let forge = LocalForge::new(dir.path().join("forge"), "bot");
        let repo = RepoRef::from_url(&format!("file://{}", dir.path().join("missing").display())).unwrap();
        (dir, forge, repo)
    }

    #[tokio::test]
    async fn counting_counts_every_call_before_it_is_made_and_writes_apart() {
        let (_dir, local, repo) = setup();
        let forge = Counted::new(&local);
        forge.access_level(&repo, "alice").await.unwrap();
        // A failed call was still made.
        assert!(forge.add_labels(&repo, 1, &["x".into()]).await.is_err());
        forge.authorized_push_target(&repo).await.unwrap();
        assert_eq!((forge.hook().calls(), forge.hook().writes()), (2, 1));
    }

    struct Refuse(ForgeCall);

    impl ForgeHook for Refuse {
        fn before(&self, call: ForgeCall, repo: &RepoRef) -> Result<(), ForgeError> {
            if call == self.0 {
                return Err(ForgeError { forge: "test", repo: repo.to_string(), kind: ForgeErrorKind::Network, message: "refused".into() });
            }
            Ok(())
        }

        fn after(&self, call: ForgeCall, repo: &RepoRef, succeeded: bool) -> Result<(), ForgeError> {
            if succeeded && call == ForgeCall::AccessLevel {
                return Err(ForgeError { forge: "test", repo: repo.to_string(), kind: ForgeErrorKind::Network, message: "lost".into() });
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_hook_answers_instead_of_the_forge_or_replaces_its_answer() {
        let (_dir, local, repo) = setup();
        // Refused before the call: the local forge would have answered NotFound.
        let forge = Layered::with_hook(&local, Refuse(ForgeCall::AddLabels));
        assert_eq!(forge.add_labels(&repo, 1, &["x".into()]).await.unwrap_err().message, "refused");
        // A success replaced afterwards; the forge's own error stays when the hook adds none.
        assert_eq!(forge.access_level(&repo, "alice").await.unwrap_err().message, "lost");
        assert_eq!(forge.default_branch(&repo).await.unwrap_err().kind, ForgeErrorKind::NotFound);
        // Layers stack.
        let counted = Counted::new(&forge);
        assert!(counted.add_labels(&repo, 1, &[]).await.is_err());
        assert_eq!((counted.kind(), counted.hook().calls(), counted.hook().writes()), ("local", 1, 1));
    }

    #[test]
    fn writes_are_the_calls_that_change_something() {
        let reads = [ForgeCall::DefaultBranch, ForgeCall::ListPullRequests, ForgeCall::ListComments, ForgeCall::ListRepoComments, ForgeCall::AccessLevel];
        assert!(reads.iter().all(|c| !c.writes()));
        assert!([ForgeCall::CreatePullRequest, ForgeCall::AddReaction, ForgeCall::DeleteBranch].iter().all(|c| c.writes()));
    }
}
