//! The pull-request lifecycle as pure decisions: given what the bot wants to propose for one
//! Application and what the forge and git show now (the bot's PRs for the Application's branch,
//! the branch's head and commits), decide what to do — open, update, close, hold, leave alone —
//! and which missing details (labels, reviewers, assignees, auto-merge) to add.
//!
//! No I/O here: the engine gathers the inputs, calls [`decide`], and applies the [`Decision`].
//! Every rule is a table case in the tests below.

mod commanding;
mod holds;
mod settings;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use commanding::{Change, Context as CommandContext, Interpreted, Reply, apply_change, interpret, is_bot_comment, replied_to, reply_marker};
pub use holds::{
    AppHolds, Delivery, Hold, HoldKind, ImageHolds, Ledger, PIN_ANNOTATION, PinTarget, PrView,
    apply as holds_apply, closed_unnoticed, derive, parse_pin_annotation, pin_target, version_text,
};
pub use settings::{
    BaseChoice, DEFAULT_BRANCH_TEMPLATE, MergeMethod, PrSettings, RepoSettings, branch_name, choose_base, pr_settings,
};

pub use crate::domain::Version;

/// One image the bot proposes to move.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageChange {
    pub alias: String,
    /// Normalized repository (`ghcr.io/acme/api`).
    pub image: String,
    pub from: Version,
    pub to: Version,
    /// major, minor, patch, pre-release, digest, build.
    pub change: String,
}

/// What issue 5's commands and closed PRs ask of the Application's PR. (Pins, ignores and
/// rollback floors act earlier, on the candidates: see [`holds`]; what is left is the proposal.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    /// A `/recreate` is waiting: regenerate the branch even over someone else's commits.
    pub recreate: bool,
    /// The newest PR of the branch was closed (not merged) and its branch still exists: a new
    /// proposal reopens it, which keeps the conversation.
    pub reopen: Option<u64>,
}

/// What the bot wants for one Application, computed on the base branch's current tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// Something to propose.
    Propose(Box<Proposal>),
    /// The base already has every version the bot would propose.
    UpToDate,
    /// The Application no longer carries the image-list annotation (or is gone).
    Unmanaged,
    /// The bot must not act (no usable base branch).
    Held { reason: String },
    /// Every image that would change is held (pinned, ignored, rolled back): an open PR is
    /// closed, its branch kept so that a later proposal can reopen it.
    AllHeld { reason: String },
    /// Something failed while working out the proposal (registry down, manifest refused): an
    /// open PR is left as it is rather than shrunk or closed on a transient failure.
    Unknown { error: crate::error::Error },
}

/// Everything the bot would write for one Application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub images: Vec<ImageChange>,
    pub base_branch: String,
    pub base_commit: String,
    pub branch: String,
    pub title: String,
    /// The visible body, without the metadata block (the engine appends it).
    pub body: String,
    pub commit_message: String,
    /// Identifies the change's content: see [`fingerprint`].
    pub fingerprint: String,
    pub settings: PrSettings,
}

/// The hidden, machine-readable record the bot keeps in each PR body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrMetadata {
    /// Format version of this record.
    pub version: u32,
    /// `namespace/name` of the Application.
    pub application: String,
    pub images: Vec<ImageChange>,
    /// [`fingerprint`] of the change the branch carries.
    pub fingerprint: String,
    /// The bot's commit the branch pointed to when the body was written.
    pub commit: String,
    /// The base commit that commit was built on.
    pub base_commit: String,
    /// Holds set by commands, the comment cursor, notices posted (see [`Ledger`]).
    #[serde(default, skip_serializing_if = "Ledger::is_empty")]
    pub ledger: Ledger,
}

/// The bot's pull request for the Application's branch, from the per-repository listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingPr {
    pub number: u64,
    pub open: bool,
    pub title: String,
    /// The visible body (metadata block removed).
    pub body: String,
    /// `None` when the block is missing or unreadable (someone edited the body).
    pub metadata: Option<PrMetadata>,
    pub labels: Vec<String>,
    pub requested_reviewers: Vec<String>,
    pub requested_teams: Vec<String>,
    pub assignees: Vec<String>,
    pub auto_merge: bool,
}

/// A commit on the bot's branch that the base does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchCommit {
    pub sha: String,
    pub parents: Vec<String>,
    pub author_email: String,
    pub committer_email: String,
}

/// The remote branch as git shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchState {
    pub head: String,
    /// Commits on the branch that are not on the base, newest first; `None` when the engine
    /// did not need to look (the head is the commit the PR's metadata records).
    pub commits: Option<Vec<BranchCommit>>,
    /// Whether the head's tree is exactly the base commit's tree with the proposal's changes
    /// written in (asked only when the branch is one commit of the bot's).
    pub head_matches_desired: Option<bool>,
}

/// Everything [`decide`] looks at for one Application.
#[derive(Debug, Clone)]
pub struct Input {
    pub desired: Desired,
    /// Open PRs for the Application's branch (more than one only if something else opened one).
    pub open_prs: Vec<ExistingPr>,
    /// The remote branch; `None` when it does not exist.
    pub branch: Option<BranchState>,
    /// What commands and closed PRs ask of this PR.
    pub holds: Holds,
    /// E-mail of the bot's git identity: commits committed by it are the bot's own.
    pub bot_email: String,
    /// Whether one of the bot's own comments on the open PR already says a foreign commit was
    /// found; `None` when the comments were not read (see [`wants_comments`]).
    pub foreign_comment_posted: Option<bool>,
}

/// How to push the branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// The branch does not exist: create it (fails if someone created it meanwhile).
    Create,
    /// Replace the branch only if it still points at this commit.
    Replace { expect: String },
}

/// Why a PR is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseReason {
    /// The base branch already has the proposed versions.
    UpToDate,
    /// The Application lost its image-list annotation.
    Unmanaged,
    /// Every image the PR would move is held (pinned, ignored or rolled back).
    Held,
}

impl CloseReason {
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::UpToDate => "the base branch already has the versions this pull request proposed",
            CloseReason::Unmanaged => {
                "the Application no longer has the argocd-image-updater.argoproj.io/image-list annotation"
            }
            CloseReason::Held => "every image this pull request would move is held (pinned, ignored or rolled back)",
        }
    }
}

/// What to do about one Application's pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to write.
    Noop,
    /// Open a PR — or reopen the closed PR `reopen` — and push its branch (`push: None` adopts
    /// the branch as it is: it already carries the change).
    Open { push: Option<Push>, reopen: Option<u64> },
    /// Bring an open PR up to date: regenerate its branch (`Some`) and/or rewrite title and body.
    Update { number: u64, push: Option<Push>, edit_title_body: bool },
    /// Close an open PR with a comment (when `number` is set) and delete the branch (when the
    /// bot owns it).
    Close { number: Option<u64>, reason: CloseReason, delete_branch: bool },
    /// Nothing may be written; the reason is reported.
    Hold { reason: String },
    /// Someone else pushed to the branch: leave it alone; comment once.
    ForeignCommit { number: Option<u64>, comment: bool },
    /// The proposal could not be worked out; the PR is left alone.
    Skip { reason: String },
}

/// Details to add to the PR after (or without) the action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixUps {
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    pub assignees: Vec<String>,
    pub auto_merge: Option<MergeMethod>,
}

impl FixUps {
    pub fn is_empty(&self) -> bool {
        *self == FixUps::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub fix_ups: FixUps,
    /// Open PRs for the branch besides the one the bot keeps (never closed by the bot; reported).
    pub duplicates: Vec<u64>,
}

/// The marker that identifies the bot's foreign-commit comment.
pub const FOREIGN_COMMIT_MARKER: &str = "<!-- argocd-image-pr:foreign-commit -->";

/// A stable digest of a change: the images (from and to) and every changed file's path and new
/// content. Two runs that would write the same files the same way agree on it.
pub fn fingerprint<'a>(images: &[ImageChange], files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Sha256::new();
    let mut images = images.to_vec();
    images.sort();
    h.update(serde_json::to_vec(&images).unwrap_or_default());
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort();
    for (path, content) in files {
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((content.len() as u64).to_be_bytes());
        h.update(content);
    }
    hex::encode(&h.finalize()[..16])
}

/// Whether [`decide`] needs the open PR's comments: only when the branch carries someone
/// else's commits (to say so once). Keeps comment listings off the no-op path.
pub fn wants_comments(input: &Input) -> bool {
    input.foreign_comment_posted.is_none()
        && !input.open_prs.is_empty()
        && branch_view(input) == BranchView::Foreign
}

/// What the remote branch is, from the bot's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BranchView {
    Missing,
    /// The head is the commit the open PR's metadata records.
    Recorded,
    /// One commit of the bot's on a base commit; whether it is exactly the desired change on
    /// the current base.
    BotOwn { matches_desired: bool },
    /// The bot's commits only, but not one clean commit (should not happen; regenerate).
    BotMessy,
    /// A commit committed by someone else.
    Foreign,
    /// Head moved and the engine did not read the commits (treated as needing a regeneration).
    Unknown,
}

fn branch_view(input: &Input) -> BranchView {
    let Some(branch) = &input.branch else { return BranchView::Missing };
    let recorded = input.open_prs.first().and_then(|p| p.metadata.as_ref()).map(|m| m.commit.as_str());
    if recorded == Some(branch.head.as_str()) {
        return BranchView::Recorded;
    }
    let Some(commits) = &branch.commits else { return BranchView::Unknown };
    if commits.iter().any(|c| !c.committer_email.eq_ignore_ascii_case(&input.bot_email)) {
        return BranchView::Foreign;
    }
    match commits.as_slice() {
        [only] if only.parents.len() == 1 => {
            BranchView::BotOwn { matches_desired: branch.head_matches_desired == Some(true) }
        }
        _ => BranchView::BotMessy,
    }
}

/// Whether the engine must compare the head's tree with the desired change: the branch is
/// exactly one commit, committed by the bot.
pub fn wants_tree_check(commits: &[BranchCommit], bot_email: &str) -> bool {
    matches!(commits, [only] if only.parents.len() == 1 && only.committer_email.eq_ignore_ascii_case(bot_email))
}

/// Whether the engine must read the branch's commits: the branch exists and its head is not
/// the commit the open PR records (the usual no-op path reads nothing).
pub fn wants_branch_commits(desired: &Desired, open_prs: &[ExistingPr], head: Option<&str>) -> bool {
    let Some(head) = head else { return false };
    if matches!(desired, Desired::Held { .. } | Desired::Unknown { .. } | Desired::AllHeld { .. }) {
        return false;
    }
    let recorded = open_prs.first().and_then(|p| p.metadata.as_ref()).map(|m| m.commit.as_str());
    recorded != Some(head)
}

/// The lifecycle rules. See docs/lifecycle.md for the prose version.
pub fn decide(input: &Input) -> Decision {
    let pr = input.open_prs.first();
    let duplicates: Vec<u64> = input.open_prs.iter().skip(1).map(|p| p.number).collect();
    let view = branch_view(input);
    let decision = |action| Decision { action, fix_ups: FixUps::default(), duplicates: duplicates.clone() };

    let proposal = match &input.desired {
        Desired::Held { reason } => return decision(Action::Hold { reason: reason.clone() }),
        Desired::Unknown { error } => return decision(Action::Skip { reason: error.to_string() }),
        // The branch is kept: unpinning or a newer version reopens the PR on it.
        Desired::AllHeld { .. } => {
            return match pr {
                Some(pr) => decision(Action::Close { number: Some(pr.number), reason: CloseReason::Held, delete_branch: false }),
                None => decision(Action::Noop),
            };
        }
        Desired::UpToDate | Desired::Unmanaged => {
            let reason =
                if input.desired == Desired::UpToDate { CloseReason::UpToDate } else { CloseReason::Unmanaged };
            let delete_branch = matches!(view, BranchView::Recorded | BranchView::BotOwn { .. } | BranchView::BotMessy);
            return match (pr, &view) {
                (Some(pr), _) => decision(Action::Close { number: Some(pr.number), reason, delete_branch }),
                // A branch left over from an interrupted run: nobody will ever see it.
                (None, BranchView::BotOwn { .. } | BranchView::BotMessy) => {
                    decision(Action::Close { number: None, reason, delete_branch: true })
                }
                (None, _) => decision(Action::Noop),
            };
        }
        Desired::Propose(p) => p,
    };

    if view == BranchView::Foreign && !input.holds.recreate {
        let comment = pr.is_some() && input.foreign_comment_posted == Some(false);
        return decision(Action::ForeignCommit { number: pr.map(|p| p.number), comment });
    }

    // The branch already carries exactly the desired change (as the bot's own commit)?
    let carries_desired = match &view {
        BranchView::Recorded => pr
            .and_then(|p| p.metadata.as_ref())
            .is_some_and(|m| m.fingerprint == proposal.fingerprint || same_images(&m.images, &proposal.images)),
        BranchView::BotOwn { matches_desired } => *matches_desired,
        _ => false,
    };
    // `/recreate` regenerates the branch whatever it carries.
    let push = if carries_desired && !input.holds.recreate {
        None
    } else {
        Some(match &input.branch {
            None => Push::Create,
            Some(b) => Push::Replace { expect: b.head.clone() },
        })
    };

    let Some(pr) = pr else {
        let mut d = decision(Action::Open { push, reopen: input.holds.reopen });
        d.fix_ups = all_extras(&proposal.settings);
        return d;
    };

    let metadata_current = pr.metadata.as_ref().is_some_and(|m| {
        input.branch.as_ref().is_some_and(|b| b.head == m.commit) && m.fingerprint_or_images_match(proposal)
    });
    let edit_title_body =
        push.is_some() || !metadata_current || pr.title != proposal.title || pr.body.trim_end() != proposal.body.trim_end();
    let mut fix_ups = missing_extras(&proposal.settings, pr);
    if push.is_some() {
        // A new version is a new review round: ask the wanted reviewers again.
        fix_ups.reviewers = proposal.settings.reviewers.clone();
        fix_ups.team_reviewers = proposal.settings.team_reviewers.clone();
    }
    let action = if push.is_none() && !edit_title_body {
        Action::Noop
    } else {
        Action::Update { number: pr.number, push, edit_title_body }
    };
    Decision { action, fix_ups, duplicates }
}

impl PrMetadata {
    fn fingerprint_or_images_match(&self, p: &Proposal) -> bool {
        self.fingerprint == p.fingerprint || same_images(&self.images, &p.images)
    }
}

/// The same images moving from the same versions to the same versions (order aside).
fn same_images(a: &[ImageChange], b: &[ImageChange]) -> bool {
    let key = |v: &[ImageChange]| {
        let mut k: Vec<(String, String, Version, Version)> =
            v.iter().map(|i| (i.alias.clone(), i.image.clone(), i.from.clone(), i.to.clone())).collect();
        k.sort();
        k
    };
    key(a) == key(b)
}

/// Every extra a new PR gets (draft is set when it is created).
fn all_extras(s: &PrSettings) -> FixUps {
    FixUps {
        labels: s.labels.clone(),
        reviewers: s.reviewers.clone(),
        team_reviewers: s.team_reviewers.clone(),
        assignees: s.assignees.clone(),
        auto_merge: s.auto_merge,
    }
}

/// What an open PR lacks. Reviewers are not re-requested here: GitHub drops a reviewer from the
/// requested list once they review, and asking them again on every run would be noise.
fn missing_extras(s: &PrSettings, pr: &ExistingPr) -> FixUps {
    let missing = |want: &[String], have: &[String]| -> Vec<String> {
        want.iter().filter(|w| !have.iter().any(|h| h.eq_ignore_ascii_case(w))).cloned().collect()
    };
    FixUps {
        labels: missing(&s.labels, &pr.labels),
        reviewers: Vec::new(),
        team_reviewers: Vec::new(),
        assignees: missing(&s.assignees, &pr.assignees),
        auto_merge: s.auto_merge.filter(|_| !pr.auto_merge),
    }
}

#[cfg(test)]
mod tests;
