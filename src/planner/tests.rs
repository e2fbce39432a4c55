//! The lifecycle rules as a table: one line per situation, the case name in every failure.

use super::*;

const BOT: &str = "argocd-image-pr@users.noreply.local";
const BASE: &str = "base0";

fn image(to: &str) -> ImageChange {
    ImageChange {
        alias: "api".into(),
        image: "ghcr.io/acme/api".into(),
        from: Version { tag: Some("1.0.0".into()), digest: None },
        to: Version { tag: Some(to.into()), digest: None },
        change: "minor".into(),
    }
}

fn settings() -> PrSettings {
    PrSettings {
        labels: vec!["deps".into()],
        reviewers: vec!["alice".into()],
        team_reviewers: vec!["platform".into()],
        assignees: vec!["bob".into()],
        draft: false,
        auto_merge: Some(MergeMethod::Squash),
        base: None,
    }
}

fn proposal(to: &str) -> Desired {
    let images = vec![image(to)];
    Desired::Propose(Box::new(Proposal {
        fingerprint: fingerprint(&images, [("envs/api/kustomization.yaml", to.as_bytes())]),
        images,
        base_branch: "main".into(),
        base_commit: BASE.into(),
        branch: "argocd-image-pr/argocd/api".into(),
        title: format!("api {to}"),
        body: format!("body {to}"),
        commit_message: format!("api {to}"),
        settings: settings(),
    }))
}

fn fp(to: &str) -> String {
    match proposal(to) {
        Desired::Propose(p) => p.fingerprint,
        _ => unreachable!(),
    }
}

/// The PR the bot left after proposing `to` with commit `commit`, fully set up.
fn pr(to: &str, commit: &str) -> ExistingPr {
    ExistingPr {
        number: 7,
        open: true,
        title: format!("api {to}"),
        body: format!("body {to}"),
        metadata: Some(PrMetadata {
            version: 1,
            application: "argocd/api".into(),
            images: vec![image(to)],
            fingerprint: fp(to),
            commit: commit.into(),
            base_commit: BASE.into(),
            ledger: Default::default(),
        }),
        labels: vec!["deps".into()],
        requested_reviewers: vec!["alice".into()],
        requested_teams: vec!["platform".into()],
        assignees: vec!["bob".into()],
        auto_merge: true,
    }
}

fn bot_commit(sha: &str) -> BranchCommit {
    BranchCommit {
        sha: sha.into(),
        parents: vec![BASE.into()],
        author_email: BOT.into(),
        committer_email: BOT.into(),
    }
}

fn foreign_commit(sha: &str) -> BranchCommit {
    BranchCommit {
        sha: sha.into(),
        parents: vec!["c1".into()],
        author_email: "dev@example.com".into(),
        committer_email: "dev@example.com".into(),
    }
}

fn branch(head: &str, commits: Option<Vec<BranchCommit>>) -> Option<BranchState> {
    Some(BranchState { head: head.into(), commits, head_matches_desired: None })
}

/// The branch is one commit of the bot's; `matches` says whether it is the desired change.
fn own_branch(head: &str, matches: bool) -> Option<BranchState> {
    Some(BranchState { head: head.into(), commits: Some(vec![bot_commit(head)]), head_matches_desired: Some(matches) })
}

fn input(desired: Desired, open_prs: Vec<ExistingPr>, branch: Option<BranchState>) -> Input {
    Input {
        desired,
        open_prs,
        branch,
        holds: Holds::default(),
        bot_email: BOT.into(),
        foreign_comment_posted: None,
    }
}

fn no_fix_ups() -> FixUps {
    FixUps::default()
}

fn all_fix_ups() -> FixUps {
    FixUps {
        labels: vec!["deps".into()],
        reviewers: vec!["alice".into()],
        team_reviewers: vec!["platform".into()],
        assignees: vec!["bob".into()],
        auto_merge: Some(MergeMethod::Squash),
    }
}

/// Fix-ups of a regenerated PR: the reviewers are asked again, nothing else is missing.
fn review_again() -> FixUps {
    FixUps { reviewers: vec!["alice".into()], team_reviewers: vec!["platform".into()], ..FixUps::default() }
}

#[test]
fn lifecycle_rules() {
    let replace = |expect: &str| Some(Push::Replace { expect: expect.into() });
    let cases: Vec<(&str, Input, Action, FixUps)> = vec![
        // Opening
        ("new proposal, no branch: create branch and PR", input(proposal("1.1.0"), vec![], None), Action::Open { push: Some(Push::Create), reopen: None }, all_fix_ups()),
        (
            "crash after push: branch is the bot's with the desired change: adopt it",
            input(proposal("1.1.0"), vec![], own_branch("c1", true)),
            Action::Open { push: None, reopen: None },
            all_fix_ups(),
        ),
        (
            "crash after push, then a newer version: replace with lease on the old head",
            input(proposal("1.2.0"), vec![], own_branch("c1", false)),
            Action::Open { push: replace("c1"), reopen: None },
            all_fix_ups(),
        ),
        (
            "leftover branch of two bot commits: replace",
            input(proposal("1.1.0"), vec![], branch("c2", Some(vec![bot_commit("c2"), bot_commit("c1")]))),
            Action::Open { push: replace("c2"), reopen: None },
            all_fix_ups(),
        ),
        // Idempotency
        ("same content: touch nothing", input(proposal("1.1.0"), vec![pr("1.1.0", "c1")], branch("c1", None)), Action::Noop, no_fix_ups()),
        (
            "newer version: regenerate on the latest base and rewrite title and body",
            input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], branch("c1", None)),
            Action::Update { number: 7, push: replace("c1"), edit_title_body: true },
            review_again(),
        ),
        (
            "template changed: edit the body only",
            input(proposal("1.1.0"), vec![ExistingPr { body: "old body".into(), ..pr("1.1.0", "c1") }], branch("c1", None)),
            Action::Update { number: 7, push: None, edit_title_body: true },
            no_fix_ups(),
        ),
        (
            "trailing whitespace the forge added is no change",
            input(proposal("1.1.0"), vec![ExistingPr { body: "body 1.1.0\n\n".into(), ..pr("1.1.0", "c1") }], branch("c1", None)),
            Action::Noop,
            no_fix_ups(),
        ),
        // Convergence
        (
            "crash after PR create, before labels: add what is missing, nothing else",
            input(
                proposal("1.1.0"),
                vec![ExistingPr { labels: vec![], assignees: vec![], auto_merge: false, ..pr("1.1.0", "c1") }],
                branch("c1", None),
            ),
            Action::Noop,
            FixUps { labels: vec!["deps".into()], assignees: vec!["bob".into()], auto_merge: Some(MergeMethod::Squash), ..FixUps::default() },
        ),
        (
            "labels differ only in case: satisfied",
            input(proposal("1.1.0"), vec![ExistingPr { labels: vec!["DEPS".into()], ..pr("1.1.0", "c1") }], branch("c1", None)),
            Action::Noop,
            no_fix_ups(),
        ),
        (
            "push done, body edit failed: the bot's own commit carries the change: fix the body, no push",
            input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], own_branch("c2", true)),
            Action::Update { number: 7, push: None, edit_title_body: true },
            no_fix_ups(),
        ),
        (
            "push done with an older change, body stale: regenerate",
            input(proposal("1.3.0"), vec![pr("1.1.0", "c1")], own_branch("c2", false)),
            Action::Update { number: 7, push: replace("c2"), edit_title_body: true },
            review_again(),
        ),
        (
            "branch deleted under an open PR: create it again",
            input(proposal("1.1.0"), vec![pr("1.1.0", "c1")], None),
            Action::Update { number: 7, push: Some(Push::Create), edit_title_body: true },
            review_again(),
        ),
        (
            "metadata block removed by a person: rewrite the body, keep the branch",
            input(proposal("1.1.0"), vec![ExistingPr { metadata: None, ..pr("1.1.0", "c1") }], own_branch("c1", true)),
            Action::Update { number: 7, push: None, edit_title_body: true },
            no_fix_ups(),
        ),
        // Closing
        (
            "base already has the versions: close and delete the branch",
            input(Desired::UpToDate, vec![pr("1.1.0", "c1")], branch("c1", None)),
            Action::Close { number: Some(7), reason: CloseReason::UpToDate, delete_branch: true },
            no_fix_ups(),
        ),
        (
            "annotations removed: close and delete the branch",
            input(Desired::Unmanaged, vec![pr("1.1.0", "c1")], branch("c1", None)),
            Action::Close { number: Some(7), reason: CloseReason::Unmanaged, delete_branch: true },
            no_fix_ups(),
        ),
        (
            "up to date with a foreign commit on the branch: close, keep the branch",
            input(Desired::UpToDate, vec![pr("1.1.0", "c1")], branch("f1", Some(vec![foreign_commit("f1"), bot_commit("c1")]))),
            Action::Close { number: Some(7), reason: CloseReason::UpToDate, delete_branch: false },
            no_fix_ups(),
        ),
        (
            "up to date, PR gone, bot's branch left over: delete it",
            input(Desired::UpToDate, vec![], own_branch("c1", true)),
            Action::Close { number: None, reason: CloseReason::UpToDate, delete_branch: true },
            no_fix_ups(),
        ),
        ("up to date, nothing there: nothing to do", input(Desired::UpToDate, vec![], None), Action::Noop, no_fix_ups()),
        (
            "up to date, someone else's branch of that name: leave it",
            input(Desired::UpToDate, vec![], branch("f1", Some(vec![foreign_commit("f1")]))),
            Action::Noop,
            no_fix_ups(),
        ),
        // Foreign commits
        (
            "foreign commit, not said yet: comment",
            Input { foreign_comment_posted: Some(false), ..input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], branch("f1", Some(vec![foreign_commit("f1"), bot_commit("c1")]))) },
            Action::ForeignCommit { number: Some(7), comment: true },
            no_fix_ups(),
        ),
        (
            "foreign commit, already said: silence",
            Input { foreign_comment_posted: Some(true), ..input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], branch("f1", Some(vec![foreign_commit("f1"), bot_commit("c1")]))) },
            Action::ForeignCommit { number: Some(7), comment: false },
            no_fix_ups(),
        ),
        (
            "branch of the same name made by someone else, no PR: leave it",
            input(proposal("1.1.0"), vec![], branch("f1", Some(vec![foreign_commit("f1")]))),
            Action::ForeignCommit { number: None, comment: false },
            no_fix_ups(),
        ),
        // Holds and failures
        (
            "no usable base: hold",
            input(Desired::Held { reason: "tag".into() }, vec![pr("1.1.0", "c1")], branch("c1", None)),
            Action::Hold { reason: "tag".into() },
            no_fix_ups(),
        ),
        (
            "every image held (pin, ignore, rollback), PR open: close it, keep the branch",
            input(Desired::AllHeld { reason: "pinned".into() }, vec![pr("1.1.0", "c1")], branch("c1", None)),
            Action::Close { number: Some(7), reason: CloseReason::Held, delete_branch: false },
            no_fix_ups(),
        ),
        (
            "every image held, no PR: nothing",
            input(Desired::AllHeld { reason: "pinned".into() }, vec![], branch("c1", None)),
            Action::Noop,
            no_fix_ups(),
        ),
        (
            "newer version after a closed PR whose branch exists: reopen it",
            Input { holds: Holds { reopen: Some(5), recreate: false }, ..input(proposal("1.2.0"), vec![], own_branch("c1", false)) },
            Action::Open { push: replace("c1"), reopen: Some(5) },
            all_fix_ups(),
        ),
        (
            "/recreate over a foreign commit: regenerate on the base",
            Input {
                holds: Holds { recreate: true, reopen: None },
                ..input(proposal("1.1.0"), vec![pr("1.1.0", "c1")], branch("f1", Some(vec![foreign_commit("f1"), bot_commit("c1")])))
            },
            Action::Update { number: 7, push: replace("f1"), edit_title_body: true },
            review_again(),
        ),
        (
            "/recreate on a clean branch: regenerate all the same",
            Input { holds: Holds { recreate: true, reopen: None }, ..input(proposal("1.1.0"), vec![pr("1.1.0", "c1")], branch("c1", None)) },
            Action::Update { number: 7, push: replace("c1"), edit_title_body: true },
            review_again(),
        ),
        (
            "registry failed: leave the PR alone",
            input(Desired::Unknown { error: crate::error::Error::new(crate::error::ErrorKind::Network, "registry down") }, vec![pr("1.1.0", "c1")], branch("c1", None)),
            Action::Skip { reason: "registry down".into() },
            no_fix_ups(),
        ),
    ];
    for (name, input, action, fix_ups) in cases {
        let d = decide(&input);
        assert_eq!(d.action, action, "case {name}");
        assert_eq!(d.fix_ups, fix_ups, "case {name}");
    }
}

#[test]
fn comments_are_read_only_for_foreign_branches() {
    let foreign = branch("f1", Some(vec![foreign_commit("f1")]));
    let cases = [
        ("no-op path", input(proposal("1.1.0"), vec![pr("1.1.0", "c1")], branch("c1", None)), false),
        ("update path", input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], branch("c1", None)), false),
        ("foreign with a PR", input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], foreign.clone()), true),
        ("foreign without a PR", input(proposal("1.2.0"), vec![], foreign.clone()), false),
        (
            "foreign, already read",
            Input { foreign_comment_posted: Some(true), ..input(proposal("1.2.0"), vec![pr("1.1.0", "c1")], foreign) },
            false,
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(wants_comments(&input), want, "case {name}");
    }
}

#[test]
fn branch_commits_are_read_only_when_the_head_moved() {
    let prs = [pr("1.1.0", "c1")];
    let cases = [
        ("head is the recorded commit", proposal("1.2.0"), &prs[..], Some("c1"), false),
        ("head moved", proposal("1.2.0"), &prs[..], Some("c9"), true),
        ("no PR, branch exists", proposal("1.2.0"), &[][..], Some("c1"), true),
        ("no branch", proposal("1.2.0"), &prs[..], None, false),
        ("held", Desired::Held { reason: "x".into() }, &prs[..], Some("c9"), false),
    ];
    for (name, desired, prs, head, want) in cases {
        assert_eq!(wants_branch_commits(&desired, prs, head), want, "case {name}");
    }
}

#[test]
fn the_tree_is_compared_only_for_one_commit_of_the_bots() {
    let cases = [
        ("one bot commit", vec![bot_commit("c1")], true),
        ("two bot commits", vec![bot_commit("c2"), bot_commit("c1")], false),
        ("a foreign commit", vec![foreign_commit("f1")], false),
        ("a merge commit", vec![BranchCommit { parents: vec!["a".into(), "b".into()], ..bot_commit("m") }], false),
        ("nothing beyond the base", vec![], false),
    ];
    for (name, commits, want) in cases {
        assert_eq!(wants_tree_check(&commits, BOT), want, "case {name}");
    }
}

#[test]
fn a_second_open_pr_for_the_branch_is_reported_not_touched() {
    let d = decide(&input(proposal("1.1.0"), vec![pr("1.1.0", "c1"), ExistingPr { number: 9, ..pr("1.1.0", "c1") }], branch("c1", None)));
    assert_eq!(d.action, Action::Noop);
    assert_eq!(d.duplicates, vec![9]);
}

#[test]
fn fingerprints_follow_content_not_order() {
    let a = fingerprint(&[image("1.1.0")], [("a.yaml", &b"x"[..]), ("b.yaml", &b"y"[..])]);
    let b = fingerprint(&[image("1.1.0")], [("b.yaml", &b"y"[..]), ("a.yaml", &b"x"[..])]);
    let c = fingerprint(&[image("1.1.0")], [("a.yaml", &b"x"[..]), ("b.yaml", &b"z"[..])]);
    assert_eq!(a, b);
    assert_ne!(a, c);
}
