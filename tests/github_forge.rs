//! The GitHub driver against the fake GitHub Enterprise: every `Forge` method round-trips, with
//! every request and answer checked against GitHub's OpenAPI description (`finish()`); token and
//! GitHub App auth; rate limits waited out; pushes over smart HTTP with the forge's credentials.
//! The fake's own checks are proven to bite at the end.

mod support;

use std::process::Command;
use std::time::Duration;

use argocd_image_pr::forge::{
    AccessLevel, Forge, ForgeErrorKind, GithubAuth, GithubForge, GithubSettings, MergeMethod, NewPullRequest, PrState,
    PrUpdate, PushTarget, Reaction, RepoRef, Reviewer,
};
use support::fake_github::{self, FakeGithub, RateLimit, Role};

const REPO: &str = "org/gitops";
const PREFIX: &str = "argocd-image-pr/";

fn repo_ref(fake: &FakeGithub, slug: &str) -> RepoRef {
    RepoRef::from_url(&fake.git_url(slug)).unwrap()
}

fn token_forge(fake: &FakeGithub) -> GithubForge {
    GithubForge::new(GithubSettings::new(Some(fake.url()), GithubAuth::Token(fake_github::TOKEN.into()))).unwrap()
}

fn fake_with_repo() -> FakeGithub {
    let fake = FakeGithub::start();
    fake.create_repo(REPO, &[("apps/web/kustomization.yaml", "images:\n  - name: web\n    newTag: 1.0.0\n")]);
    fake
}

/// Commits a change on `branch` (from `main`) in a scratch clone and pushes it with `target`'s
/// credentials over smart HTTP, as the bot would. Returns git's result and the commit.
fn push_branch(target: &PushTarget, branch: &str, tag: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = match (&target.username, &target.password) {
        (Some(u), Some(p)) => target.url.replacen("http://", &format!("http://{u}:{p}@"), 1),
        _ => target.url.clone(),
    };
    let git = |args: &[&str]| {
        Command::new("git")
            .args(["-c", "user.name=bot", "-c", "user.email=bot@example.com", "-c", "credential.helper="])
            .args(args)
            .current_dir(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    };
    let clone = git(&["clone", "-q", &url, "."]);
    if !clone.status.success() {
        return (false, String::from_utf8_lossy(&clone.stderr).into_owned(), String::new());
    }
    std::fs::write(dir.path().join("apps/web/kustomization.yaml"), format!("images:\n  - name: web\n    newTag: {tag}\n")).unwrap();
    assert!(git(&["checkout", "-q", "-b", branch]).status.success());
    assert!(git(&["commit", "-q", "-am", &format!("web {tag}")]).status.success());
    let sha = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout).unwrap().trim().to_string();
    let push = git(&["push", "-q", "--force", "origin", &format!("{branch}:refs/heads/{branch}")]);
    (push.status.success(), String::from_utf8_lossy(&push.stderr).into_owned(), sha)
}

fn new_pr(branch: &str) -> NewPullRequest {
    NewPullRequest {
        title: "Update web to 1.1.0".into(),
        body: "Deploy review".into(),
        head: branch.into(),
        base: "main".into(),
        draft: false,
    }
}

#[tokio::test]
async fn every_forge_method_round_trips_within_the_contract() {
    let fake = fake_with_repo();
    fake.set_permission(REPO, "alice", Role::Write);
    fake.set_permission(REPO, "reviewer", Role::Write);
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    let branch = "argocd-image-pr/argocd/web";

    assert_eq!(forge.kind(), "github");
    assert_eq!(forge.default_branch(&repo).await.unwrap(), "main");

    let target = forge.authorized_push_target(&repo).await.unwrap();
    assert_eq!(target.url, fake.git_url(REPO));
    assert_eq!(target.username.as_deref(), Some("x-access-token"));
    assert!(!format!("{target:?}").contains(fake_github::TOKEN), "the token leaks through Debug");
    let (pushed, stderr, sha) = push_branch(&target, branch, "1.1.0");
    assert!(pushed, "push failed: {stderr}");

    let mut wanted = new_pr(branch);
    wanted.draft = true;
    let created = forge.create_pull_request(&repo, &wanted).await.unwrap();
    assert_eq!((created.head.as_str(), created.base.as_str(), created.head_sha.as_str()), (branch, "main", sha.as_str()));
    assert_eq!((created.state, created.draft), (PrState::Open, true));
    assert_eq!(created.url, format!("{}/{REPO}/pull/{}", fake.url(), created.number));

    let number = created.number;
    let updated = forge
        .update_pull_request(&repo, number, &PrUpdate { title: Some("Update web to 1.2.0".into()), body: Some("New body".into()), state: None })
        .await
        .unwrap();
    assert_eq!((updated.title.as_str(), updated.body.as_str()), ("Update web to 1.2.0", "New body"));

    forge.add_labels(&repo, number, &["image-update".into(), "env/dev".into()]).await.unwrap();
    forge.request_reviewers(&repo, number, &[Reviewer::User("reviewer".into()), Reviewer::Team("platform".into())]).await.unwrap();
    forge.add_assignees(&repo, number, &["alice".into()]).await.unwrap();
    forge.enable_auto_merge(&repo, number, MergeMethod::Squash).await.unwrap();

    let listed = forge.list_pull_requests(&repo, PREFIX).await.unwrap();
    assert_eq!(listed.len(), 1);
    let pr = &listed[0];
    assert_eq!(pr.labels, ["image-update", "env/dev"]);
    assert_eq!(pr.requested_reviewers, ["reviewer"]);
    assert_eq!(pr.requested_teams, ["platform"]);
    assert_eq!(pr.assignees, ["alice"]);
    assert!(pr.auto_merge && pr.draft);
    assert_eq!(pr.head_sha, sha);
    assert_eq!(fake.pull(REPO, number).auto_merge, Some(("squash".into(), fake_github::BOT_USER.into())));

    let comment = forge.create_comment(&repo, number, "Hello from the bot").await.unwrap();
    assert_eq!(comment.author, fake_github::BOT_USER);
    let theirs = fake.comment(REPO, number, "alice", "/pin web");
    let comments = forge.list_comments(&repo, number).await.unwrap();
    let seen: Vec<(&str, &str)> = comments.iter().map(|c| (c.author.as_str(), c.body.as_str())).collect();
    assert_eq!(seen, [(fake_github::BOT_USER, "Hello from the bot"), ("alice", "/pin web")]);
    assert!(comments[1].url.ends_with(&format!("#issuecomment-{theirs}")));
    // The repository-wide listing: every comment with the PR it is on, `since` inclusive.
    let everywhere = forge.list_repo_comments(&repo, None).await.unwrap();
    let seen: Vec<(u64, &str)> = everywhere.iter().map(|c| (c.pr, c.body.as_str())).collect();
    assert_eq!(seen, [(number, "Hello from the bot"), (number, "/pin web")]);
    let since = everywhere[1].created_at - chrono::Duration::milliseconds(1);
    let later = forge.list_repo_comments(&repo, Some(since + chrono::Duration::hours(1))).await.unwrap();
    assert!(later.is_empty(), "{later:?}");
    assert!(forge.list_repo_comments(&repo, Some(since)).await.unwrap().iter().any(|c| c.id == theirs));

    forge.add_reaction(&repo, number, theirs, Reaction::ThumbsUp).await.unwrap();
    let reactions = fake.reactions(theirs);
    assert_eq!((reactions.len(), reactions[0].content.as_str()), (1, "+1"));

    assert_eq!(forge.access_level(&repo, "alice").await.unwrap(), AccessLevel::Write);

    let closed = forge.update_pull_request(&repo, number, &PrUpdate { state: Some(PrState::Closed), ..PrUpdate::default() }).await.unwrap();
    assert_eq!(closed.state, PrState::Closed);
    assert!(closed.closed_at.is_some());
    let reopened = forge.update_pull_request(&repo, number, &PrUpdate { state: Some(PrState::Open), ..PrUpdate::default() }).await.unwrap();
    assert_eq!(reopened.state, PrState::Open);

    forge.delete_branch(&repo, branch).await.unwrap();
    assert_eq!(fake.branch_sha(REPO, branch), None);
    let after = forge.list_pull_requests(&repo, PREFIX).await.unwrap();
    assert_eq!(after[0].state, PrState::Closed, "GitHub closes a pull request whose head branch is deleted");
    assert_eq!(after[0].head_sha, sha, "a closed pull request keeps its last head commit");
    fake.finish();
}

#[tokio::test]
async fn merged_pull_requests_carry_their_merge_commit() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    let branch = "argocd-image-pr/argocd/web";
    let (pushed, stderr, _) = push_branch(&forge.authorized_push_target(&repo).await.unwrap(), branch, "1.1.0");
    assert!(pushed, "{stderr}");
    let number = forge.create_pull_request(&repo, &new_pr(branch)).await.unwrap().number;
    let merge = fake.merge_pull(REPO, number, "alice");
    let pr = forge.list_pull_requests(&repo, PREFIX).await.unwrap().remove(0);
    assert_eq!(pr.state, PrState::Merged);
    assert_eq!(pr.merge_commit_sha.as_deref(), Some(merge.as_str()));
    assert_eq!(fake.branch_sha(REPO, "main").as_deref(), Some(merge.as_str()));
    assert_eq!(
        fake.file_at(REPO, "main", "apps/web/kustomization.yaml").unwrap(),
        "images:\n  - name: web\n    newTag: 1.1.0\n"
    );
    fake.finish();
}

#[tokio::test]
async fn listing_follows_pages_and_keeps_only_the_bots_branches_of_this_repository() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    let sha = fake.push_commit(REPO, "seed", &[("x", Some("1"))], "alice");
    for i in 0..130 {
        let branch = format!("{PREFIX}argocd/app-{i:03}");
        fake.create_branch(REPO, &branch, &sha);
        fake.open_pull(REPO, fake_github::BOT_USER, &branch, "main", &format!("app {i}"));
    }
    for i in 0..40 {
        let branch = format!("feature/{i}");
        fake.create_branch(REPO, &branch, &sha);
        fake.open_pull(REPO, "alice", &branch, "main", "a person's change");
    }
    fake.clear_requests();
    let listed = forge.list_pull_requests(&repo, PREFIX).await.unwrap();
    assert_eq!(listed.len(), 130);
    assert!(listed.iter().all(|p| p.head.starts_with(PREFIX)));
    let numbers: Vec<u64> = listed.iter().map(|p| p.number).collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(numbers, sorted, "newest updated first");
    let lists: Vec<_> = fake.requests().into_iter().filter(|r| r.operation == "pulls/list").collect();
    assert_eq!(lists.len(), 2, "170 pull requests are two pages of 100");
    assert!(lists[0].query.contains("state=all") && lists[0].query.contains("per_page=100"));
    assert!(lists[1].query.contains("page=2"));

    let mut settings = GithubSettings::new(Some(fake.url()), GithubAuth::Token(fake_github::TOKEN.into()));
    settings.max_pr_pages = 1;
    let one_page = GithubForge::new(settings).unwrap();
    let e = one_page.list_pull_requests(&repo, PREFIX).await.unwrap_err();
    assert!(e.to_string().contains(REPO) && e.to_string().contains("more than 1 pages"), "never a part of the listing: {e}");
    assert_eq!(fake.writes(), 0, "listing writes nothing");
    fake.finish();
}

#[tokio::test]
async fn github_app_auth_mints_installation_tokens_and_refreshes_them_before_expiry() {
    let fake = fake_with_repo();
    let key = openssl::rsa::Rsa::generate(2048).unwrap();
    fake.register_app(4242, "argocd-image-pr", &key.public_key_to_pem().unwrap(), Duration::from_secs(8));
    fake.install_app(REPO);
    let pem = String::from_utf8(key.private_key_to_pem().unwrap()).unwrap();
    let mut settings = GithubSettings::new(Some(fake.url()), GithubAuth::App { app_id: 4242, private_key_pem: pem.clone() });
    settings.token_refresh_margin = Duration::from_secs(4);
    assert!(!format!("{settings:?}").contains("PRIVATE KEY"), "the key leaks through Debug");
    let forge = GithubForge::new(settings).unwrap();
    let repo = repo_ref(&fake, REPO);

    assert_eq!(forge.push_target(&repo).password, None, "no token before the first call");
    assert_eq!(forge.default_branch(&repo).await.unwrap(), "main");
    assert_eq!(fake.tokens_issued(), 1);
    let target = forge.authorized_push_target(&repo).await.unwrap();
    assert!(target.password.as_deref().unwrap().starts_with("ghs_"));
    assert_eq!(forge.push_target(&repo), target, "the cached token is the push credential");
    assert_eq!(fake.tokens_issued(), 1, "a fresh token is reused");

    let branch = "argocd-image-pr/argocd/web";
    let (pushed, stderr, _) = push_branch(&target, branch, "1.1.0");
    assert!(pushed, "push with the installation token failed: {stderr}");
    let pr = forge.create_pull_request(&repo, &new_pr(branch)).await.unwrap();
    assert_eq!(fake.pull(REPO, pr.number).user, fake.app_user());

    // 8 s tokens are replaced when less than 4 s are left.
    let minted = fake.tokens_issued();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    forge.list_pull_requests(&repo, PREFIX).await.unwrap();
    assert_eq!(fake.tokens_issued(), minted + 1, "the token was refreshed before it expired");
    assert_eq!(forge.stats().tokens_minted as usize, fake.tokens_issued());

    // A token that stops working early (revoked, clock skew) is replaced once, on its 401.
    fake.revoke_installation_tokens();
    assert_eq!(forge.default_branch(&repo).await.unwrap(), "main");
    assert_eq!(fake.tokens_issued(), minted + 2);
    let installation_lookups = fake.requests().iter().filter(|r| r.operation == "apps/get-repo-installation").count();
    assert_eq!(installation_lookups, 1, "the installation id is cached");

    // A key the fake does not know: the JWT is refused and the error says what was being done.
    let other = openssl::rsa::Rsa::generate(2048).unwrap();
    let wrong = GithubForge::new(GithubSettings::new(
        Some(fake.url()),
        GithubAuth::App { app_id: 4242, private_key_pem: String::from_utf8(other.private_key_to_pem().unwrap()).unwrap() },
    ))
    .unwrap();
    let e = wrong.default_branch(&repo).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("finding the installation of GitHub App 4242") && e.to_string().contains("org/gitops"), "{e}");

    assert!(GithubForge::new(GithubSettings::new(None, GithubAuth::App { app_id: 1, private_key_pem: "not a key".into() })).is_err());
    fake.finish();
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_counted() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    fake.rate_limit_next(1, RateLimit::Secondary { retry_after: 1 });
    fake.rate_limit_next(1, RateLimit::TooMany { retry_after: 1 });
    fake.rate_limit_next(1, RateLimit::Primary { reset_in: 0 });
    let started = std::time::Instant::now();
    assert_eq!(forge.default_branch(&repo).await.unwrap(), "main");
    assert!(started.elapsed() >= Duration::from_secs(3), "each rate limit is waited out");
    assert_eq!(fake.rate_limited(), 3);
    assert_eq!(forge.stats().rate_limit_waits, 3);
    assert_eq!(forge.stats().requests, 4);

    // Longer than the cap: no wait, an error that says so.
    fake.rate_limit_next(1, RateLimit::Secondary { retry_after: 3600 });
    let started = std::time::Instant::now();
    let e = forge.default_branch(&repo).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::RateLimited, "{e}");
    assert!(e.to_string().contains("3600s") && e.to_string().contains("900s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    fake.finish();
}

#[tokio::test]
async fn pushes_need_a_valid_token() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    let good = forge.push_target(&repo);
    assert_eq!(good.password.as_deref(), Some(fake_github::TOKEN));
    let anonymous = PushTarget { password: None, username: None, ..good.clone() };
    let (ok, _, _) = push_branch(&anonymous, "argocd-image-pr/x", "2.0.0");
    assert!(!ok, "an anonymous clone of a private repository must fail");
    let wrong = PushTarget { password: Some("ghp_wrong".into()), ..good.clone() };
    let (ok, _, _) = push_branch(&wrong, "argocd-image-pr/x", "2.0.0");
    assert!(!ok, "a wrong token must fail");
    assert_eq!(fake.pushes(), 0);
    let (ok, stderr, sha) = push_branch(&good, "argocd-image-pr/x", "2.0.0");
    assert!(ok, "{stderr}");
    assert_eq!(fake.pushes(), 1);
    assert_eq!(fake.branch_sha(REPO, "argocd-image-pr/x"), Some(sha));
    fake.finish();
}

#[tokio::test]
async fn access_levels_map_every_github_role() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    let cases = [
        ("admin", Role::Admin, AccessLevel::Admin),
        ("maintainer", Role::Maintain, AccessLevel::Maintain),
        ("writer", Role::Write, AccessLevel::Write),
        // Triage may label and close, not push: read on the bot's ladder.
        ("triager", Role::Triage, AccessLevel::Read),
        ("reader", Role::Read, AccessLevel::Read),
        ("outsider", Role::None, AccessLevel::None),
    ];
    for (user, role, want) in cases {
        fake.set_permission(REPO, user, role);
        assert_eq!(forge.access_level(&repo, user).await.unwrap(), want, "case {user}");
    }
    assert_eq!(forge.access_level(&repo, "nobody-at-all").await.unwrap(), AccessLevel::None, "not a user: no access");
    fake.finish();
}

#[tokio::test]
async fn deleting_a_missing_branch_is_success() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    forge.delete_branch(&repo, "argocd-image-pr/argocd/gone").await.unwrap();
    let delete = fake.requests().into_iter().find(|r| r.operation == "git/delete-ref").unwrap();
    assert_eq!((delete.path.as_str(), delete.status), ("/repos/org/gitops/git/refs/heads/argocd-image-pr/argocd/gone", 422));
    fake.finish();
}

#[tokio::test]
async fn errors_name_the_repository_and_what_was_being_done() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    let repo = repo_ref(&fake, REPO);
    let branch = "argocd-image-pr/argocd/web";
    let (pushed, stderr, _) = push_branch(&forge.push_target(&repo), branch, "1.1.0");
    assert!(pushed, "{stderr}");

    fake.fail("pulls/create", 1, 500);
    let e = forge.create_pull_request(&repo, &new_pr(branch)).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Network);
    assert_eq!(e.repo, "org/gitops");
    let text = e.to_string();
    assert!(text.contains("org/gitops") && text.contains(&format!("creating pull request for branch {branch} into main: 500")), "{text}");

    forge.create_pull_request(&repo, &new_pr(branch)).await.unwrap();
    let e = forge.create_pull_request(&repo, &new_pr(branch)).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Conflict);
    assert!(e.to_string().contains("422 Validation Failed (A pull request already exists for org:argocd-image-pr/argocd/web.)"), "{e}");

    let e = forge.create_comment(&repo, 999, "x").await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::NotFound);
    assert!(e.to_string().contains("commenting on pull request #999: 404"), "{e}");

    let missing = repo_ref(&fake, "org/missing");
    let e = forge.default_branch(&missing).await.unwrap_err();
    assert!(e.to_string().contains("org/missing") && e.to_string().contains("default branch"), "{e}");

    let unreachable = GithubForge::new(GithubSettings::new(
        Some("http://127.0.0.1:9".into()),
        GithubAuth::Token(fake_github::TOKEN.into()),
    ))
    .unwrap();
    let e = unreachable.default_branch(&repo).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Network, "{e}");
    fake.finish();
}

// ---- the fake's own checks bite ----

#[tokio::test]
#[should_panic(expected = "no such operation in GitHub's REST API")]
async fn the_fake_fails_the_test_on_an_unknown_route() {
    let fake = fake_with_repo();
    let answer = reqwest::Client::new()
        .get(format!("{}/repos/org/gitops/pull-requests", fake.api_url()))
        .bearer_auth(fake_github::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
    fake.finish();
}

#[tokio::test]
#[should_panic(expected = "repos/get 200 response body")]
async fn the_fake_fails_the_test_on_an_answer_off_the_contract() {
    let fake = fake_with_repo();
    let forge = token_forge(&fake);
    fake.corrupt_next_response("repos/get");
    let e = forge.default_branch(&repo_ref(&fake, REPO)).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Protocol);
    fake.finish();
}

#[tokio::test]
#[should_panic(expected = "pulls/create request body")]
async fn the_fake_fails_the_test_on_a_request_off_the_contract() {
    let fake = fake_with_repo();
    let _ = reqwest::Client::new()
        .post(format!("{}/repos/org/gitops/pulls", fake.api_url()))
        .bearer_auth(fake_github::TOKEN)
        .json(&serde_json::json!({"title": 7, "base": "main"}))
        .send()
        .await
        .unwrap();
    fake.finish();
}

#[test]
#[should_panic(expected = "contract violation")]
fn dropping_the_fake_without_finish_still_fails_on_violations() {
    let fake = FakeGithub::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        reqwest::Client::new().get(format!("{}/nowhere", fake.url())).send().await.unwrap();
    });
    drop(fake);
}
