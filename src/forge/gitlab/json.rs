//! GitLab's JSON, as far as the bot reads it, and its conversion into the ports' types. Pure:
//! the state, draft, access-level and events rules are pinned by the unit tests below, on the
//! example bodies of GitLab's REST API documentation (`doc/api/*.md`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ports::{AccessLevel, Comment, PrState, PullRequest};

/// A user as the REST API shows one (`author`, `assignees[]`, `reviewers[]`, `/users?username=`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct GlUser {
    /// Missing from a few older embedded user objects; every listing the bot resolves ids from
    /// (`/users`, a merge request's assignees and reviewers) has it.
    #[serde(default)]
    pub id: Option<u64>,
    pub username: String,
}

/// `GET /projects/:id`.
#[derive(Debug, Deserialize)]
pub(super) struct GlProject {
    /// `null` for a project with an empty repository.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// A merge request (`GET/POST/PUT /projects/:id/merge_requests[/:iid]`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct GlMergeRequest {
    pub iid: u64,
    #[serde(default)]
    pub project_id: Option<u64>,
    /// Differs from `target_project_id` for a merge request from a fork.
    #[serde(default)]
    pub source_project_id: Option<u64>,
    #[serde(default)]
    pub target_project_id: Option<u64>,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `opened`, `closed`, `locked` (a short transition while merging) or `merged`.
    pub state: String,
    /// Since GitLab 14.0; `work_in_progress` before (and still sent, deprecated).
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub work_in_progress: Option<bool>,
    pub source_branch: String,
    pub target_branch: String,
    /// Head of the source branch.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub squash_commit_sha: Option<String>,
    #[serde(default)]
    pub author: Option<GlUser>,
    #[serde(default)]
    pub assignees: Option<Vec<GlUser>>,
    #[serde(default)]
    pub reviewers: Option<Vec<GlUser>>,
    /// Label names (the bot never asks for `with_labels_details`).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    pub web_url: String,
    /// Auto-merge is set (the response has no `auto_merge` field, GitLab issue 547634).
    #[serde(default)]
    pub merge_when_pipeline_succeeds: Option<bool>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
}

impl GlMergeRequest {
    pub fn is_draft(&self) -> bool {
        self.draft.or(self.work_in_progress).unwrap_or(false)
    }

    /// Whether the source branch is in the project itself: a branch of the same name in a fork
    /// is somebody else's merge request, never the bot's.
    pub fn in_same_project(&self) -> bool {
        let target = self.target_project_id.or(self.project_id);
        match (self.source_project_id, target) {
            (Some(source), Some(target)) => source == target,
            // An answer without the ids cannot be a fork's as far as the bot can tell.
            _ => true,
        }
    }

    pub fn reviewer_ids(&self) -> Vec<u64> {
        ids(self.reviewers.as_deref())
    }

    pub fn assignee_ids(&self) -> Vec<u64> {
        ids(self.assignees.as_deref())
    }

    pub fn into_port(self) -> PullRequest {
        let state = pr_state(&self.state);
        let draft = self.is_draft();
        let title = if draft { strip_draft_prefix(&self.title).to_string() } else { self.title.clone() };
        let names = |users: Option<Vec<GlUser>>| users.unwrap_or_default().into_iter().map(|u| u.username).collect();
        // What landed on the target branch: the merge commit, else the squash commit (squash
        // with fast-forward), else the head itself (fast-forward without squash).
        let merge_commit_sha = match state {
            PrState::Merged => self.merge_commit_sha.or(self.squash_commit_sha).or_else(|| self.sha.clone()),
            _ => None,
        };
        PullRequest {
            number: self.iid,
            // GitLab shows a deleted account's work as the "Ghost User" (`ghost`).
            author: self.author.map(|u| u.username).unwrap_or_else(|| "ghost".into()),
            url: self.web_url,
            title,
            body: self.description.unwrap_or_default(),
            head: self.source_branch,
            head_sha: self.sha.unwrap_or_default(),
            base: self.target_branch,
            state,
            draft,
            labels: self.labels.unwrap_or_default(),
            requested_reviewers: names(self.reviewers),
            // GitLab has no team reviewers.
            requested_teams: Vec::new(),
            assignees: names(self.assignees),
            auto_merge: self.merge_when_pipeline_succeeds.unwrap_or(false),
            merge_commit_sha,
            updated_at: self.updated_at,
            // GitLab leaves `closed_at` empty for a merged merge request; GitHub sets it.
            closed_at: self.closed_at.or(self.merged_at),
        }
    }
}

fn ids(users: Option<&[GlUser]>) -> Vec<u64> {
    users.unwrap_or_default().iter().filter_map(|u| u.id).collect()
}

/// A merge request's state as the bot's. `locked` is the moment GitLab merges it: still open.
/// A state GitLab does not document is taken as closed, which proposes nothing new on it.
pub(super) fn pr_state(state: &str) -> PrState {
    match state {
        "opened" | "locked" => PrState::Open,
        "merged" => PrState::Merged,
        _ => PrState::Closed,
    }
}

/// GitLab marks a draft by a title prefix (`Draft:`, `[Draft]`, `(Draft)`; `Draft -`, `WIP:`,
/// `[WIP]` on older servers), in any case. The bot's titles are compared without it.
pub(super) fn strip_draft_prefix(title: &str) -> &str {
    const PREFIXES: [&str; 6] = ["draft:", "[draft]", "(draft)", "draft -", "wip:", "[wip]"];
    let mut rest = title.trim_start();
    loop {
        let found = PREFIXES
            .iter()
            .find(|p| rest.get(..p.len()).is_some_and(|head| head.eq_ignore_ascii_case(p)));
        match found {
            Some(p) => rest = rest[p.len()..].trim_start(),
            None => return rest,
        }
    }
}

/// The title GitLab takes as a draft's.
pub(super) fn draft_title(title: &str) -> String {
    format!("Draft: {}", strip_draft_prefix(title))
}

/// A comment (`GET /projects/:id/merge_requests/:iid/notes`, and `note` in an event).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct GlNote {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub author: Option<GlUser>,
    pub created_at: DateTime<Utc>,
    /// GitLab's own notes ("added 1 commit", "changed the description", ...).
    #[serde(default)]
    pub system: bool,
    /// `MergeRequest`, `Issue`, `Commit`, `Snippet`, ...
    #[serde(default)]
    pub noteable_type: Option<String>,
    /// The merge request's (or issue's) `iid`; absent for commits and snippets.
    #[serde(default)]
    pub noteable_iid: Option<u64>,
}

impl GlNote {
    /// `url`: where people see it (`<merge request>#note_<id>`).
    pub fn into_comment(self, pr: u64, url: String) -> Comment {
        Comment {
            id: self.id,
            pr,
            author: self.author.map(|u| u.username).unwrap_or_else(|| "ghost".into()),
            body: self.body.unwrap_or_default(),
            created_at: self.created_at,
            url,
        }
    }
}

/// The notes of one merge request as the bot's comments: GitLab's system notes are not
/// comments anybody wrote.
pub(super) fn comments_from_notes(notes: Vec<GlNote>, pr: u64, url: impl Fn(u64) -> String) -> Vec<Comment> {
    notes.into_iter().filter(|n| !n.system).map(|n| {
        let link = url(n.id);
        n.into_comment(pr, link)
    }).collect()
}

/// An entry of `GET /projects/:id/events`.
#[derive(Debug, Deserialize)]
pub(super) struct GlEvent {
    /// Present for `commented on` events (`target_type` `Note`, `DiffNote`, `DiscussionNote`).
    #[serde(default)]
    pub note: Option<GlNote>,
}

/// The comments on merge requests among a project's `commented on` events, made at or after
/// `since`, each once, oldest first. `url(iid, note id)` links one.
///
/// The events API lists a note once, when it is made: a note edited later is not listed
/// again, unlike GitHub's comment listing, which lists a comment again by its `updated_at`.
pub(super) fn comments_from_events(
    events: Vec<GlEvent>,
    since: Option<DateTime<Utc>>,
    url: impl Fn(u64, u64) -> String,
) -> Vec<Comment> {
    let mut by_id: BTreeMap<u64, Comment> = BTreeMap::new();
    for note in events.into_iter().filter_map(|e| e.note) {
        if note.system || note.noteable_type.as_deref() != Some("MergeRequest") {
            continue;
        }
        if since.is_some_and(|s| note.created_at < s) {
            continue;
        }
        let Some(iid) = note.noteable_iid else { continue };
        let link = url(iid, note.id);
        by_id.entry(note.id).or_insert_with(|| note.into_comment(iid, link));
    }
    let mut comments: Vec<Comment> = by_id.into_values().collect();
    comments.sort_by_key(|c| (c.created_at, c.id));
    comments
}

/// `after=` of the events listing: events are filtered by day (`YYYY-MM-DD`), and whether the
/// day itself is included has differed between versions, so the day before `since`.
pub(super) fn events_after(since: DateTime<Utc>) -> String {
    (since.date_naive() - chrono::Days::new(1)).format("%Y-%m-%d").to_string()
}

/// `GET /projects/:id/members/all/:user_id`.
#[derive(Debug, Deserialize)]
pub(super) struct GlMember {
    pub access_level: u64,
}

/// GitLab's role (`access_level`) as the bot's ladder: Guest (10), Planner (15) and Reporter
/// (20) cannot push, Developer (30) can, Maintainer (40) manages the project, Owner (50) owns
/// it. Minimal access (5) sees nothing of the repository.
pub(super) fn access_level_from(level: u64) -> AccessLevel {
    match level {
        0..=9 => AccessLevel::None,
        10..=29 => AccessLevel::Read,
        30..=39 => AccessLevel::Write,
        40..=49 => AccessLevel::Maintain,
        _ => AccessLevel::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of "List project merge requests" in GitLab's doc/api/merge_requests.md
    // (abridged to the fields the bot reads, plus `draft`, `reviewers` and `squash_commit_sha`
    // of newer versions).
    const MERGED_MR: &str = r#"{
      "id": 1, "iid": 1, "project_id": 3, "title": "test1",
      "description": "fixed login page css paddings", "state": "merged",
      "merged_by": {"id": 87854, "name": "Douwe Maan", "username": "DouweM", "state": "active"},
      "merged_at": "2018-09-07T11:16:17.520Z", "closed_by": null, "closed_at": null,
      "created_at": "2017-04-29T08:46:00Z", "updated_at": "2017-04-29T08:46:00Z",
      "target_branch": "master", "source_branch": "test1", "upvotes": 0, "downvotes": 0,
      "author": {"id": 1, "name": "Administrator", "username": "admin", "state": "active",
                 "avatar_url": null, "web_url": "https://gitlab.example.com/admin"},
      "assignee": {"id": 1, "name": "Administrator", "username": "admin"},
      "assignees": [{"name": "Miss Monserrate Beier", "username": "axel.block", "id": 12, "state": "active"}],
      "reviewers": [{"id": 2, "name": "Sam Bauch", "username": "kenyatta_oconnell", "state": "active"}],
      "source_project_id": 2, "target_project_id": 3,
      "labels": ["Community contribution", "Manage"],
      "draft": false, "work_in_progress": false,
      "milestone": null,
      "merge_when_pipeline_succeeds": true, "merge_status": "can_be_merged",
      "sha": "8888888888888888888888888888888888888888",
      "merge_commit_sha": null, "squash_commit_sha": null,
      "user_notes_count": 1, "discussion_locked": null,
      "should_remove_source_branch": true, "force_remove_source_branch": false,
      "web_url": "http://gitlab.example.com/my-group/my-project/merge_requests/1",
      "references": {"short": "!1", "relative": "my-group/my-project!1", "full": "my-group/my-project!1"},
      "squash": false
    }"#;

    fn mr(json: &str) -> GlMergeRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_documented_merge_request_as_a_pull_request() {
        let m = mr(MERGED_MR);
        assert!(!m.in_same_project(), "source project 2, target 3: a fork's");
        assert_eq!((m.reviewer_ids(), m.assignee_ids()), (vec![2], vec![12]));
        let p = m.into_port();
        assert_eq!(p.number, 1);
        assert_eq!(p.author, "admin");
        assert_eq!(p.url, "http://gitlab.example.com/my-group/my-project/merge_requests/1");
        assert_eq!((p.title.as_str(), p.body.as_str()), ("test1", "fixed login page css paddings"));
        assert_eq!((p.head.as_str(), p.base.as_str()), ("test1", "master"));
        assert_eq!(p.head_sha, "8888888888888888888888888888888888888888");
        assert_eq!(p.state, PrState::Merged);
        assert!(!p.draft && p.auto_merge);
        assert_eq!(p.labels, ["Community contribution", "Manage"]);
        assert_eq!(p.requested_reviewers, ["kenyatta_oconnell"]);
        assert!(p.requested_teams.is_empty());
        assert_eq!(p.assignees, ["axel.block"]);
        // Fast-forward merge without squash: the head itself landed.
        assert_eq!(p.merge_commit_sha.as_deref(), Some("8888888888888888888888888888888888888888"));
        assert_eq!(p.updated_at, Some("2017-04-29T08:46:00Z".parse().unwrap()));
        assert_eq!(p.closed_at, Some("2018-09-07T11:16:17.520Z".parse().unwrap()), "merged_at stands in");
    }

    #[test]
    fn states_and_what_landed() {
        let cases = [
            ("opened", PrState::Open),
            ("locked", PrState::Open),
            ("closed", PrState::Closed),
            ("merged", PrState::Merged),
            ("something new", PrState::Closed),
        ];
        for (state, want) in cases {
            assert_eq!(pr_state(state), want, "case {state}");
        }
        let with = |state: &str, merge: &str, squash: &str| {
            let json = MERGED_MR
                .replace(r#""state": "merged""#, &format!(r#""state": "{state}""#))
                .replace(r#""merge_commit_sha": null"#, &format!(r#""merge_commit_sha": {merge}"#))
                .replace(r#""squash_commit_sha": null"#, &format!(r#""squash_commit_sha": {squash}"#));
            mr(&json).into_port().merge_commit_sha
        };
        assert_eq!(with("merged", r#""m""#, r#""s""#).as_deref(), Some("m"), "a merge commit");
        assert_eq!(with("merged", "null", r#""s""#).as_deref(), Some("s"), "squashed, fast-forward");
        assert_eq!(with("opened", r#""m""#, "null"), None, "only a merged one has landed");
        assert_eq!(with("closed", r#""m""#, "null"), None);
    }

    #[test]
    fn drafts_are_a_flag_and_a_title_prefix() {
        let cases = [
            ("Draft: chore: update", "chore: update"),
            ("draft:chore: update", "chore: update"),
            ("[Draft] chore", "chore"),
            ("(DRAFT) chore", "chore"),
            ("Draft - chore", "chore"),
            ("WIP: chore", "chore"),
            ("Draft: [Draft] chore", "chore"),
            ("chore: draft: not a prefix", "chore: draft: not a prefix"),
            ("Drafting", "Drafting"),
        ];
        for (title, want) in cases {
            assert_eq!(strip_draft_prefix(title), want, "case {title:?}");
        }
        assert_eq!(draft_title("chore: update"), "Draft: chore: update");
        assert_eq!(draft_title("Draft: chore: update"), "Draft: chore: update", "never twice");

        let draft = MERGED_MR
            .replace(r#""title": "test1""#, r#""title": "Draft: test1""#)
            .replace(r#""draft": false"#, r#""draft": true"#);
        let p = mr(&draft).into_port();
        assert!(p.draft);
        assert_eq!(p.title, "test1", "the bot's title, compared without GitLab's prefix");
        // Before GitLab 14.0 only `work_in_progress` says it.
        let old = MERGED_MR
            .replace(r#""title": "test1""#, r#""title": "WIP: test1""#)
            .replace(r#""draft": false, "work_in_progress": false"#, r#""work_in_progress": true"#);
        let p = mr(&old).into_port();
        assert!(p.draft && p.title == "test1", "{p:?}");
        // A title that only looks like a draft's is kept whole.
        let p = mr(&MERGED_MR.replace(r#""title": "test1""#, r#""title": "Draft: notes""#)).into_port();
        assert!(!p.draft && p.title == "Draft: notes");
    }

    #[test]
    fn a_minimal_answer_parses_and_a_same_project_branch_is_ours() {
        let m = mr(r#"{"iid": 7, "project_id": 5, "source_project_id": 5, "target_project_id": 5,
            "title": "t", "description": null, "state": "opened", "source_branch": "argocd-image-pr/a/b",
            "target_branch": "main", "author": null, "labels": null, "web_url": "https://g/x/-/merge_requests/7"}"#);
        assert!(m.in_same_project());
        let p = m.into_port();
        assert_eq!((p.author.as_str(), p.body.as_str(), p.head_sha.as_str()), ("ghost", "", ""));
        assert!(p.labels.is_empty() && !p.auto_merge && !p.draft && p.state == PrState::Open);
    }

    // A note of "List all merge request notes" (doc/api/notes.md), and a system note.
    const NOTES: &str = r#"[
      {"id": 301, "body": "/pin api", "attachment": null,
       "author": {"id": 1, "username": "pipin", "email": "admin@example.com", "name": "Pip", "state": "active"},
       "created_at": "2013-10-02T08:57:14Z", "updated_at": "2013-10-02T08:57:14Z",
       "system": false, "noteable_id": 2, "noteable_type": "MergeRequest", "noteable_iid": 2,
       "resolvable": false, "confidential": false, "internal": false},
      {"id": 302, "body": "added 1 commit", "author": {"id": 9, "username": "bot"},
       "created_at": "2013-10-02T09:22:45Z", "system": true, "noteable_id": 2,
       "noteable_type": "MergeRequest", "noteable_iid": 2}
    ]"#;

    #[test]
    fn notes_as_comments_without_system_notes() {
        let notes: Vec<GlNote> = serde_json::from_str(NOTES).unwrap();
        let comments = comments_from_notes(notes, 2, |id| format!("https://g/p/-/merge_requests/2#note_{id}"));
        assert_eq!(comments.len(), 1, "{comments:?}");
        let c = &comments[0];
        assert_eq!((c.id, c.pr, c.author.as_str(), c.body.as_str()), (301, 2, "pipin", "/pin api"));
        assert_eq!(c.url, "https://g/p/-/merge_requests/2#note_301");
        assert_eq!(c.created_at, "2013-10-02T08:57:14Z".parse::<DateTime<Utc>>().unwrap());
    }

    // The `commented on` example of "List a project's visible events" (doc/api/events.md), and
    // variants: on a merge request, a system note, an older one, the same note twice.
    const EVENTS: &str = r#"[
      {"title": null, "project_id": 1, "action_name": "commented on", "target_id": 1312,
       "target_iid": 1312, "target_type": "Note", "author_id": 1, "data": null, "target_title": null,
       "created_at": "2015-12-04T10:33:58.089Z",
       "note": {"id": 1312, "body": "What an awesome day!", "attachment": null,
                "author": {"name": "Dmitriy Zaporozhets", "username": "root", "id": 1, "state": "active"},
                "created_at": "2015-12-04T10:33:56.698Z", "system": false,
                "noteable_id": 377, "noteable_type": "Issue", "noteable_iid": 377},
       "author": {"name": "Dmitriy Zaporozhets", "username": "root", "id": 1}, "author_username": "root"},
      {"action_name": "commented on", "target_type": "DiffNote", "created_at": "2015-12-04T11:00:01Z",
       "note": {"id": 1400, "body": "/unpin", "author": {"username": "alice", "id": 4},
                "created_at": "2015-12-04T11:00:00Z", "system": false,
                "noteable_type": "MergeRequest", "noteable_iid": 12}},
      {"action_name": "commented on", "target_type": "Note", "created_at": "2015-12-04T10:59:01Z",
       "note": {"id": 1399, "body": "/pin web", "author": {"username": "bob", "id": 5},
                "created_at": "2015-12-04T10:59:00Z", "system": false,
                "noteable_type": "MergeRequest", "noteable_iid": 11}},
      {"action_name": "commented on", "target_type": "Note", "created_at": "2015-12-04T10:59:01Z",
       "note": {"id": 1399, "body": "/pin web", "author": {"username": "bob", "id": 5},
                "created_at": "2015-12-04T10:59:00Z", "system": false,
                "noteable_type": "MergeRequest", "noteable_iid": 11}},
      {"action_name": "commented on", "target_type": "Note", "created_at": "2015-12-04T10:58:01Z",
       "note": {"id": 1398, "body": "changed the description", "author": {"username": "bob", "id": 5},
                "created_at": "2015-12-04T10:58:00Z", "system": true,
                "noteable_type": "MergeRequest", "noteable_iid": 11}},
      {"action_name": "commented on", "target_type": "Note", "created_at": "2015-12-03T10:00:01Z",
       "note": {"id": 1300, "body": "/help", "author": {"username": "carol", "id": 6},
                "created_at": "2015-12-03T10:00:00Z", "system": false,
                "noteable_type": "MergeRequest", "noteable_iid": 11}},
      {"action_name": "pushed to", "target_type": null, "created_at": "2015-12-04T12:00:00Z"}
    ]"#;

    #[test]
    fn the_events_filter_keeps_new_comments_on_merge_requests() {
        let events: Vec<GlEvent> = serde_json::from_str(EVENTS).unwrap();
        let since = "2015-12-04T00:00:00Z".parse().unwrap();
        let comments = comments_from_events(events, Some(since), |iid, id| format!("mr/{iid}#note_{id}"));
        let got: Vec<(u64, u64, &str, &str)> =
            comments.iter().map(|c| (c.id, c.pr, c.author.as_str(), c.url.as_str())).collect();
        assert_eq!(got, [(1399, 11, "bob", "mr/11#note_1399"), (1400, 12, "alice", "mr/12#note_1400")]);

        let events: Vec<GlEvent> = serde_json::from_str(EVENTS).unwrap();
        let all = comments_from_events(events, None, |iid, id| format!("{iid}/{id}"));
        assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), [1300, 1399, 1400], "oldest first, no issue, no system note");
    }

    #[test]
    fn events_are_asked_from_the_day_before() {
        let since = "2024-03-01T00:00:05Z".parse().unwrap();
        assert_eq!(events_after(since), "2024-02-29");
        let since = "2024-03-01T23:59:59Z".parse().unwrap();
        assert_eq!(events_after(since), "2024-02-29");
    }

    #[test]
    fn access_levels_from_gitlab_roles() {
        let cases = [
            (0, AccessLevel::None),
            (5, AccessLevel::None),
            (10, AccessLevel::Read),
            (15, AccessLevel::Read),
            (20, AccessLevel::Read),
            (30, AccessLevel::Write),
            (40, AccessLevel::Maintain),
            (50, AccessLevel::Admin),
            (60, AccessLevel::Admin),
        ];
        for (level, want) in cases {
            assert_eq!(access_level_from(level), want, "case {level}");
        }
        assert!(!access_level_from(20).can_write(), "a Reporter never commands the bot");
        assert!(access_level_from(30).can_write(), "a Developer does");
        let member: GlMember = serde_json::from_str(
            r#"{"id": 1, "username": "raymond_smith", "name": "Raymond Smith", "state": "active",
                "created_at": "2012-10-22T14:13:35Z", "access_level": 30, "expires_at": null}"#,
        )
        .unwrap();
        assert_eq!(access_level_from(member.access_level), AccessLevel::Write);
    }
}
