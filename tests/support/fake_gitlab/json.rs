//! The fake's answers, in GitLab's entities (`lib/api/entities` in GitLab, as the REST docs
//! show them): `UserBasic`, `ProjectWithAccess`, `MergeRequestBasic` / `MergeRequest`, `Note`,
//! `AwardEmoji`, `Member`, `Event`. Field names, types and nulls as GitLab sends them.

use serde_json::{Value, json};

use super::{Award, Event, MergeRequest, MrState, Note, PushKind, State, Target, ts};

pub struct View<'a> {
    pub st: &'a State,
    /// `http://127.0.0.1:PORT`
    pub web: &'a str,
}

impl View<'_> {
    /// `UserBasic`: what GitLab shows of a user to another user.
    pub fn user(&self, username: &str) -> Value {
        let id = self.st.user_id(username).unwrap_or(0);
        let name = match username {
            super::BOT_USER => "argocd-image-pr".to_string(),
            other => {
                let mut c = other.chars();
                c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
            }
        };
        json!({
            "id": id,
            "username": username,
            "name": name,
            "state": "active",
            "locked": false,
            "avatar_url": format!("https://secure.gravatar.com/avatar/{id:032x}?s=80&d=identicon"),
            "web_url": format!("{}/{username}", self.web),
        })
    }

    pub fn project(&self, key: &str, viewer: &str) -> Value {
        let p = &self.st.projects[key];
        let (namespace_path, name) = p.path.rsplit_once('/').unwrap();
        let group = &self.st.groups[&namespace_path.to_ascii_lowercase()];
        let parent_id = namespace_path
            .rsplit_once('/')
            .map(|(parent, _)| json!(self.st.groups[&parent.to_ascii_lowercase()].id))
            .unwrap_or(Value::Null);
        let human = |path: &str| path.split('/').collect::<Vec<_>>().join(" / ");
        let web = format!("{}/{}", self.web, p.path);
        let api = format!("{}/api/v4/projects/{}", self.web, p.id);
        let own = self.st.members.get(key).and_then(|m| m.get(&viewer.to_ascii_lowercase()));
        let access = |level: Option<&super::Access>| match level {
            Some(l) => json!({"access_level": l.level(), "notification_level": 3}),
            None => Value::Null,
        };
        let inherited = self.st.access(&p.path, viewer).filter(|a| Some(a) != own);
        let last_activity = self
            .st
            .events
            .iter()
            .filter(|e| e.project.eq_ignore_ascii_case(&p.path))
            .map(|e| e.created_at)
            .max()
            .unwrap_or(p.created_at);
        let v = json!({
            "id": p.id,
            "description": null,
            "name": name,
            "name_with_namespace": human(&p.path),
            "path": name,
            "path_with_namespace": p.path,
            "created_at": ts(p.created_at),
            "default_branch": p.default_branch,
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": format!("git@127.0.0.1:{}.git", p.path),
            "http_url_to_repo": format!("{web}.git"),
            "web_url": web,
            "readme_url": null,
            "forks_count": 0,
            "avatar_url": null,
            "star_count": 0,
            "last_activity_at": ts(last_activity),
            "visibility": "private",
            "namespace": {
                "id": group.id,
                "name": group.path.rsplit('/').next().unwrap(),
                "path": group.path.rsplit('/').next().unwrap(),
                "kind": "group",
                "full_path": group.path,
                "parent_id": parent_id,
                "avatar_url": null,
                "web_url": format!("{}/groups/{}", self.web, group.path),
            },
            "container_registry_image_prefix": format!("127.0.0.1:5050/{}", p.path.to_ascii_lowercase()),
            "_links": {
                "self": api,
                "issues": format!("{api}/issues"),
                "merge_requests": format!("{api}/merge_requests"),
                "repo_branches": format!("{api}/repository/branches"),
                "labels": format!("{api}/labels"),
                "events": format!("{api}/events"),
                "members": format!("{api}/members"),
                "cluster_agents": format!("{api}/cluster_agents"),
            },
        });
        let settings = json!({
            "empty_repo": false,
            "archived": false,
            "resolve_outdated_diff_discussions": false,
            "issues_enabled": true,
            "merge_requests_enabled": true,
            "wiki_enabled": true,
            "jobs_enabled": true,
            "snippets_enabled": true,
            "container_registry_enabled": true,
            "creator_id": 1,
            "open_issues_count": 0,
            "public_jobs": true,
            "shared_with_groups": [],
            "only_allow_merge_if_pipeline_succeeds": false,
            "allow_merge_on_skipped_pipeline": null,
            "only_allow_merge_if_all_discussions_are_resolved": false,
            "remove_source_branch_after_merge": true,
            "request_access_enabled": true,
            "merge_method": "merge",
            "squash_option": "default_off",
            "autoclose_referenced_issues": true,
            "permissions": {
                "project_access": access(own),
                "group_access": access(inherited.as_ref()),
            },
        });
        merged(v, settings)
    }

    fn labels(&self, mr: &MergeRequest) -> Value {
        let mut labels = mr.labels.clone();
        labels.sort();
        json!(labels)
    }

    /// `MergeRequestBasic`, as listings answer.
    pub fn mr_basic(&self, mr: &MergeRequest) -> Value {
        let p = self.st.project(&mr.project);
        let open = mr.state == MrState::Opened;
        let detailed = match (open, mr.draft()) {
            (false, _) => "not_open",
            (true, true) => "draft_status",
            (true, false) => "mergeable",
        };
        let user_notes = self
            .st
            .notes
            .iter()
            .filter(|n| n.project.eq_ignore_ascii_case(&mr.project) && n.mr_iid == mr.iid && !n.system)
            .count();
        let closed = mr.state == MrState::Closed;
        let v = json!({
            "id": mr.id,
            "iid": mr.iid,
            "project_id": p.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state.as_str(),
            "created_at": ts(mr.created_at),
            "updated_at": ts(mr.updated_at),
            "merged_by": mr.merge_user.as_ref().filter(|_| mr.state == MrState::Merged).map(|u| self.user(u)),
            "merge_user": mr.merge_user.as_ref().map(|u| self.user(u)),
            "merged_at": mr.merged_at.map(ts),
            "closed_by": mr.closed_by.as_ref().filter(|_| closed).map(|u| self.user(u)),
            "closed_at": mr.closed_at.filter(|_| closed).map(ts),
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": user_notes,
            // Award emoji on the merge request itself, which the fake does not serve.
            "upvotes": 0,
            "downvotes": 0,
            "author": self.user(&mr.author),
            "assignees": mr.assignees.iter().map(|a| self.user(a)).collect::<Vec<_>>(),
            "assignee": mr.assignees.first().map(|a| self.user(a)),
            "reviewers": mr.reviewers.iter().map(|a| self.user(a)).collect::<Vec<_>>(),
        });
        let rest = json!({
            "source_project_id": p.id,
            "target_project_id": p.id,
            "labels": self.labels(mr),
            "draft": mr.draft(),
            "imported": false,
            "imported_from": "none",
            "work_in_progress": mr.draft(),
            "milestone": null,
            "merge_when_pipeline_succeeds": mr.merge_when_pipeline_succeeds,
            "merge_status": if open { "can_be_merged" } else { "unchecked" },
            "detailed_merge_status": detailed,
            "merge_after": null,
            "sha": mr.sha,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": mr.squash_commit_sha,
            "discussion_locked": null,
            "should_remove_source_branch": null,
            "force_remove_source_branch": mr.force_remove_source_branch,
            "prepared_at": ts(mr.created_at),
            "reference": format!("!{}", mr.iid),
            "references": {
                "short": format!("!{}", mr.iid),
                "relative": format!("!{}", mr.iid),
                "full": format!("{}!{}", p.path, mr.iid),
            },
            "web_url": format!("{}/{}/-/merge_requests/{}", self.web, p.path, mr.iid),
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": null,
                "human_total_time_spent": null,
            },
            "squash": mr.squash,
            "squash_on_merge": mr.squash,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": false,
            "blocking_discussions_resolved": true,
        });
        merged(v, rest)
    }

    /// `MergeRequest`: what a single merge request, a create, an update and a merge answer.
    pub fn mr(&self, mr: &MergeRequest, viewer: &str, base_sha: Option<String>) -> Value {
        let v = self.mr_basic(mr);
        let p = self.st.project(&mr.project);
        let open = mr.state == MrState::Opened;
        let pipeline = json!({
            "id": 70000 + mr.id,
            "iid": mr.iid,
            "project_id": p.id,
            "sha": mr.sha,
            "ref": format!("refs/merge-requests/{}/head", mr.iid),
            "status": "running",
            "source": "merge_request_event",
            "created_at": ts(mr.updated_at),
            "updated_at": ts(mr.updated_at),
            "web_url": format!("{}/{}/-/pipelines/{}", self.web, p.path, 70000 + mr.id),
        });
        let can_merge = self
            .st
            .access(&p.path, viewer)
            .is_some_and(|a| a >= p.protected.get(&mr.target_branch).copied().unwrap_or(super::Access::Developer));
        let extra = json!({
            "subscribed": viewer == mr.author,
            "changes_count": "1",
            "latest_build_started_at": ts(mr.updated_at),
            "latest_build_finished_at": null,
            "first_deployed_to_production_at": null,
            "pipeline": pipeline,
            "head_pipeline": pipeline,
            "diff_refs": {
                "base_sha": base_sha,
                "head_sha": mr.sha,
                "start_sha": base_sha,
            },
            "merge_error": null,
            "first_contribution": false,
            "user": {"can_merge": can_merge && open},
            "approvals_before_merge": null,
        });
        merged(v, extra)
    }

    /// `Note`.
    pub fn note(&self, n: &Note) -> Value {
        let p = self.st.project(&n.project);
        let mr = self.st.mr_index(&n.project, n.mr_iid).map(|i| &self.st.mrs[i]);
        json!({
            "id": n.id,
            "type": if n.discussion { json!("DiscussionNote") } else { Value::Null },
            "body": n.body,
            "author": self.user(&n.author),
            "created_at": ts(n.created_at),
            "updated_at": ts(n.updated_at),
            "system": n.system,
            "noteable_id": mr.map(|m| m.id),
            "noteable_type": "MergeRequest",
            "project_id": p.id,
            "resolvable": n.discussion && !n.system,
            "resolved": if n.discussion && !n.system { json!(false) } else { Value::Null },
            "resolved_by": null,
            "resolved_at": null,
            "confidential": false,
            "internal": false,
            "imported": false,
            "imported_from": "none",
            "noteable_iid": n.mr_iid,
            "commands_changes": {},
        })
    }

    /// `AwardEmoji`.
    pub fn award(&self, a: &Award) -> Value {
        json!({
            "id": a.id,
            "name": a.name,
            "user": self.user(&a.user),
            "created_at": ts(a.created_at),
            "updated_at": ts(a.created_at),
            "awardable_id": a.note_id,
            "awardable_type": "Note",
            "url": null,
        })
    }

    /// `Member` (the `members/all` answer).
    pub fn member(&self, username: &str, level: super::Access) -> Value {
        let mut v = self.user(username);
        let created = self.st.projects.values().map(|p| p.created_at).min().map(ts);
        if let Some(o) = v.as_object_mut() {
            o.insert("access_level".into(), json!(level.level()));
            o.insert("created_at".into(), json!(created));
            o.insert("created_by".into(), self.user("root"));
            o.insert("expires_at".into(), Value::Null);
            o.insert("membership_state".into(), json!("active"));
        }
        v
    }

    /// `Event`, with the `note` of a comment and the `push_data` of a push.
    pub fn event(&self, e: &Event) -> Value {
        let p = self.st.project(&e.project);
        let mut v = json!({
            "id": e.id,
            "project_id": p.id,
            "action_name": "",
            "target_id": null,
            "target_iid": null,
            "target_type": null,
            "author_id": self.st.user_id(&e.author).unwrap_or(0),
            "target_title": null,
            "created_at": ts(e.created_at),
            "author": self.user(&e.author),
            "imported": false,
            "imported_from": "none",
            "author_username": e.author,
        });
        match &e.target {
            Target::Note { id, discussion } => {
                let note = self.st.notes.iter().find(|n| n.id == *id).unwrap();
                v["action_name"] = json!("commented on");
                v["target_id"] = json!(id);
                v["target_iid"] = json!(id);
                v["target_type"] = json!(if *discussion { "DiscussionNote" } else { "Note" });
                v["note"] = self.note(note);
            }
            Target::MergeRequest { iid } => {
                let mr = &self.st.mrs[self.st.mr_index(&e.project, *iid).unwrap()];
                v["action_name"] = json!(match e.action {
                    "created" => "opened",
                    "merged" => "accepted",
                    other => other,
                });
                v["target_id"] = json!(mr.id);
                v["target_iid"] = json!(mr.iid);
                v["target_type"] = json!("MergeRequest");
                v["target_title"] = json!(mr.title);
            }
            Target::Push { branch, from, to, kind, commits, title } => {
                let (name, action) = match kind {
                    PushKind::New => ("pushed new", "created"),
                    PushKind::To => ("pushed to", "pushed"),
                    PushKind::Deleted => ("deleted", "removed"),
                };
                v["action_name"] = json!(name);
                v["push_data"] = json!({
                    "commit_count": commits,
                    "action": action,
                    "ref_type": "branch",
                    "commit_from": if *kind == PushKind::New { Value::Null } else { json!(from) },
                    "commit_to": if *kind == PushKind::Deleted { Value::Null } else { json!(to) },
                    "ref": branch,
                    "commit_title": if title.is_empty() { Value::Null } else { json!(title) },
                    "ref_count": null,
                });
            }
        }
        v
    }
}

impl View<'_> {
    /// The `project` (and `source`/`target`) object of webhook payloads.
    fn hook_project(&self, key: &str) -> Value {
        let p = &self.st.projects[key];
        let web = format!("{}/{}", self.web, p.path);
        let (namespace, name) = p.path.rsplit_once('/').unwrap();
        json!({
            "id": p.id,
            "name": name,
            "description": "",
            "web_url": web,
            "avatar_url": null,
            "git_ssh_url": format!("git@127.0.0.1:{}.git", p.path),
            "git_http_url": format!("{web}.git"),
            "namespace": namespace.rsplit('/').next().unwrap(),
            "visibility_level": 0,
            "path_with_namespace": p.path,
            "default_branch": p.default_branch,
            "ci_config_path": null,
            "homepage": web,
            "url": format!("{web}.git"),
            "ssh_url": format!("git@127.0.0.1:{}.git", p.path),
            "http_url": format!("{web}.git"),
        })
    }

    /// GitLab's `Note Hook` delivery for a note on a merge request (the "Comment on a merge
    /// request" payload of GitLab's webhook events page).
    pub fn note_hook(&self, n: &Note) -> Value {
        let key = n.project.to_ascii_lowercase();
        let p = &self.st.projects[&key];
        let mr = &self.st.mrs[self.st.mr_index(&n.project, n.mr_iid).unwrap()];
        let hook_ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let mut user = self.user(&n.author);
        if let Some(o) = user.as_object_mut() {
            o.retain(|k, _| ["id", "name", "username", "avatar_url"].contains(&k.as_str()));
            o.insert("email".into(), json!("[REDACTED]"));
        }
        let web = format!("{}/{}", self.web, p.path);
        let mut labels = mr.labels.clone();
        labels.sort();
        json!({
            "object_kind": "note",
            "event_type": "note",
            "user": user,
            "project_id": p.id,
            "project": self.hook_project(&key),
            "repository": {"name": p.path.rsplit('/').next().unwrap(), "url": format!("{web}.git"), "description": "", "homepage": web},
            "object_attributes": {
                "id": n.id,
                "note": n.body,
                "noteable_type": "MergeRequest",
                "author_id": self.st.user_id(&n.author),
                "created_at": hook_ts(n.created_at),
                "updated_at": hook_ts(n.updated_at),
                "project_id": p.id,
                "attachment": null,
                "line_code": null,
                "commit_id": "",
                "noteable_id": mr.id,
                "system": n.system,
                "st_diff": null,
                "type": if n.discussion { json!("DiscussionNote") } else { Value::Null },
                "action": "create",
                "url": format!("{web}/-/merge_requests/{}#note_{}", mr.iid, n.id),
            },
            "merge_request": {
                "id": mr.id,
                "iid": mr.iid,
                "target_branch": mr.target_branch,
                "source_branch": mr.source_branch,
                "source_project_id": p.id,
                "target_project_id": p.id,
                "author_id": self.st.user_id(&mr.author),
                "assignee_id": mr.assignees.first().and_then(|a| self.st.user_id(a)),
                "title": mr.title,
                "created_at": hook_ts(mr.created_at),
                "updated_at": hook_ts(mr.updated_at),
                "milestone_id": null,
                "state": mr.state.as_str(),
                "merge_status": "can_be_merged",
                "description": mr.description,
                "position": 0,
                "labels": labels.iter().map(|l| json!({"title": l, "type": "ProjectLabel", "project_id": p.id})).collect::<Vec<_>>(),
                "source": self.hook_project(&key),
                "target": self.hook_project(&key),
                "last_commit": {"id": mr.sha, "url": format!("{web}/-/commit/{}", mr.sha)},
                "work_in_progress": mr.draft(),
                "draft": mr.draft(),
                "url": format!("{web}/-/merge_requests/{}", mr.iid),
                "detailed_merge_status": if mr.is_open() { "mergeable" } else { "not_open" },
            },
        })
    }
}

/// `a`'s fields, then `b`'s (`json!` stops at a few dozen fields).
fn merged(mut a: Value, b: Value) -> Value {
    if let (Some(o), Value::Object(extra)) = (a.as_object_mut(), b) {
        o.extend(extra);
    }
    a
}
