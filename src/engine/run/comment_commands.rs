//! The part of a cycle that reads what people did to the bot's PRs since its last look — comment
//! commands, PRs closed without merging — and records it in the PRs' ledgers (see
//! `planner::holds`), before the holds are derived; and the rollback notices, after.
//!
//! Comments are listed once per repository and cycle, from the newest `seen_at` of the bot's PRs
//! there (the start of the last cycle that wrote a ledger) minus [`SKEW`]: whatever its timing, a
//! comment is listed by the next cycle, and a quiet cycle costs one listing, not one per PR. A
//! comment counts once: its id must be above its PR's `comments_seen`, and the bot must not have
//! replied to it. Ledgers are written before replies: a crash in between loses an
//! acknowledgement, never a command.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::{Ctx, RepoState, template_images};
use crate::error::Error;
use crate::metadata;
use crate::commands;
use crate::domain::{AppId, pr_ref};
use crate::planner::{self, Change, Ledger, PrMetadata, Reply};
use crate::ports::{AccessLevel, Comment, Forge, PrState, PrUpdate, PullRequest, Reaction, RepoRef};
use crate::templates;

/// How far before the last cycle's start the listing begins: room for the clocks of the bot and
/// the forge to disagree (the forge filters by its own time). Comments in the overlap are listed
/// again and skipped.
pub(super) const SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Where the repository's comment listing starts: the newest `seen_at` among the bot's PRs, or
/// earlier when a comment waits to be handled again (`retry_since`); `None` (every comment)
/// when a PR was never looked at.
pub(super) fn listing_start<'l>(ledgers: impl IntoIterator<Item = &'l Ledger>) -> Option<DateTime<Utc>> {
    let mut newest: Option<DateTime<Utc>> = None;
    let mut retry: Option<DateTime<Utc>> = None;
    let mut any = false;
    for l in ledgers {
        any = true;
        let seen = l.seen_at?;
        newest = Some(newest.map_or(seen, |n| n.max(seen)));
        if let Some(r) = l.retry_since {
            retry = Some(retry.map_or(r, |x| x.min(r)));
        }
    }
    if !any {
        return None;
    }
    let start = match (newest, retry) {
        (Some(n), Some(r)) => n.min(r),
        (n, r) => n.or(r)?,
    };
    Some(start - SKEW)
}

/// The Applications the run manages: id → image aliases.
pub(super) type Managed = BTreeMap<String, Vec<String>>;

struct PendingReply {
    pr: u64,
    comment: u64,
    body: String,
    reaction: Reaction,
}

impl<F: Forge> Ctx<'_, F> {
    /// Reads new comments of the bot's PRs in one repository, carries out the commands, and
    /// notices PRs closed without merging. Updates the in-memory listing with what it wrote.
    pub(super) async fn commands_phase(
        &self,
        repos: &mut BTreeMap<String, RepoState>,
        url: &str,
        managed: &Managed,
        errors: &mut Vec<Error>,
    ) {
        let Some(state) = repos.get(url) else { return };
        let Some(Ok(listing)) = state.listing.clone() else { return };
        let repo = state.repo.clone();
        let ours: Vec<(PullRequest, PrMetadata)> = listing
            .iter()
            .filter_map(|p| metadata::decode::<PrMetadata>(&p.body).map(|m| (p.clone(), m)))
            .collect();
        // The newest seen_at of the repository: kept by every write of this cycle when it cannot
        // handle all the comments listed, so that none of them falls out of the next listing.
        let previous = ours.iter().filter_map(|(_, m)| m.ledger.seen_at).max();
        let (mut prs, unmanaged): (Vec<_>, Vec<_>) = ours.into_iter().partition(|(_, m)| managed.contains_key(&m.application));
        let mut dirty: BTreeSet<u64> = BTreeSet::new();
        let mut replies: Vec<PendingReply> = Vec::new();
        let mut permissions: HashMap<String, AccessLevel> = HashMap::new();

        // One listing for the whole repository (none when the bot has no PR here).
        let mut by_pr: BTreeMap<u64, Vec<Comment>> = BTreeMap::new();
        if !prs.is_empty() {
            let since = listing_start(prs.iter().map(|(_, m)| &m.ledger));
            match self.forge.list_repo_comments(&repo, since).await {
                Ok(all) => {
                    for c in all {
                        by_pr.entry(c.pr).or_default().push(c);
                    }
                }
                Err(e) => {
                    // Nothing is handled: no write of this cycle moves the start of the listing.
                    errors.push(e.into());
                    self.hold_cursor(&repo, previous);
                    return;
                }
            }
        }
        // A command on a PR whose Application is not read this cycle (its location failed, it is
        // defined twice, its annotations are broken) waits for a cycle that reads it.
        let waiting = unmanaged.iter().any(|(pr, m)| {
            by_pr.get(&pr.number).is_some_and(|cs| {
                cs.iter().any(|c| c.id > m.ledger.comments_seen && !planner::is_bot_comment(&c.author, &pr.author))
            })
        });
        if waiting {
            self.hold_cursor(&repo, previous);
        }

        for i in 0..prs.len() {
            let (pr, meta) = prs[i].clone();
            let Some(comments) = by_pr.get(&pr.number) else { continue };
            let by_bot = |c: &Comment| planner::is_bot_comment(&c.author, &pr.author);
            let replied = planner::replied_to(comments.iter().filter(|c| by_bot(c)).map(|c| &c.body));
            let fresh: Vec<&Comment> = comments
                .iter()
                .filter(|c| c.id > meta.ledger.comments_seen && !by_bot(c) && !replied.contains(&c.id))
                .collect();
            let newest = comments.iter().map(|c| c.id).max().unwrap_or(0);
            // The ledger moves past every comment read, except one whose author's permission
            // could not be read: it stays ahead of the ledger and is looked at again next cycle.
            let mut seen_up_to = newest;
            if fresh.is_empty() {
                continue;
            }
            let mut retry_since: Option<DateTime<Utc>> = None;
            let aliases = managed.get(&meta.application).cloned().unwrap_or_default();
            for c in fresh {
                let parsed = commands::parse_comment(&c.body);
                if parsed.is_empty() {
                    continue;
                }
                let needs_permission = parsed.iter().any(|p| !matches!(p, Ok(commands::Command::Help)));
                let can_write = if !needs_permission {
                    false
                } else if let Some(p) = permissions.get(&c.author) {
                    p.can_write()
                } else {
                    match self.forge.access_level(&repo, &c.author).await {
                        Ok(p) => {
                            permissions.insert(c.author.clone(), p);
                            p.can_write()
                        }
                        Err(e) => {
                            // Not knowing is not permission: the comment is looked at again next time.
                            errors.push(Error::from(e).context(format!("{}: permission of {}", pr_ref(pr.number, &pr.url), c.author)));
                            seen_up_to = seen_up_to.min(c.id.saturating_sub(1));
                            retry_since = Some(retry_since.map_or(c.created_at, |r: DateTime<Utc>| r.min(c.created_at)));
                            continue;
                        }
                    }
                };
                let mut texts = Vec::new();
                let mut reaction = Reaction::ThumbsUp;
                for p in &parsed {
                    let ctx = planner::CommandContext {
                        pr_open: pr.state == PrState::Open,
                        author: &c.author,
                        can_write,
                        at: c.created_at,
                        url: &c.url,
                        aliases: &aliases,
                        images: &meta.images,
                    };
                    let interpreted = planner::interpret(p, &ctx);
                    if let Some(change) = &interpreted.change {
                        let app = meta.application.clone();
                        let mut ledgers: Vec<(u64, Ledger)> =
                            prs.iter().filter(|(_, m)| m.application == app).map(|(p, m)| (p.number, m.ledger.clone())).collect();
                        for n in planner::apply_change(&mut ledgers, pr.number, change) {
                            dirty.insert(n);
                        }
                        for (n, l) in ledgers {
                            if let Some((_, m)) = prs.iter_mut().find(|(p, _)| p.number == n) {
                                m.ledger = l;
                            }
                        }
                    }
                    if !matches!(interpreted.reply, Reply::Ack { .. } | Reply::Help) {
                        reaction = Reaction::Confused;
                    }
                    let pr_action = pr_action(&interpreted, pr.state == PrState::Open, &meta, &aliases);
                    match self.render_reply(&repo, &meta, &c.author, &pr.base, interpreted.reply, pr_action) {
                        Ok(t) => texts.push(t),
                        Err(e) => errors.push(e.context(pr_ref(pr.number, &pr.url))),
                    }
                }
                replies.push(PendingReply {
                    pr: pr.number,
                    comment: c.id,
                    body: format!("{}\n{}\n", texts.join("\n\n---\n\n").trim_end(), planner::reply_marker(c.id)),
                    reaction,
                });
            }
            prs[i].1.ledger.comments_seen = prs[i].1.ledger.comments_seen.max(seen_up_to);
            prs[i].1.ledger.retry_since = retry_since;
            dirty.insert(pr.number);
        }

        // PRs closed without merging: their versions are ignored from now on; say so once.
        let mut notices: Vec<(u64, String)> = Vec::new();
        for app in managed.keys() {
            let views: Vec<planner::PrView> = prs.iter().map(|(p, m)| pr_view(p, m)).collect();
            for n in planner::closed_unnoticed(app, &views) {
                let Some((p, m)) = prs.iter_mut().find(|(p, _)| p.number == n) else { continue };
                m.ledger.notices.push("closed-ignored".into());
                let body = self.comment_for(&repo, app, templates::Comment::ClosedIgnored { images: template_images(&m.images) });
                match body {
                    Ok(b) => notices.push((n, format!("{}\n<!-- argocd-image-pr:closed-ignored -->\n", b.trim_end()))),
                    Err(e) => errors.push(e.context(pr_ref(n, &p.url))),
                }
                dirty.insert(n);
            }
        }

        // Ledgers first, then what the bot says.
        for n in &dirty {
            let Some((pr, meta)) = prs.iter_mut().find(|(p, _)| p.number == *n) else { continue };
            // The ledgers written here do not move the start of the listing (a later write of
            // this cycle does, once everything listed is handled).
            meta.ledger.seen_at = meta.ledger.seen_at.max(previous);
            let update = PrUpdate { title: None, body: Some(metadata::compose(&metadata::visible(&pr.body), meta)), state: None };
            match self.forge.update_pull_request(&repo, *n, &update).await {
                Ok(updated) => *pr = updated,
                Err(e) => {
                    errors.push(Error::from(e).context(pr_ref(*n, &pr.url)));
                    self.hold_cursor(&repo, previous);
                    // Without the ledger, replying would make the command look handled.
                    replies.retain(|r| r.pr != *n);
                    notices.retain(|(x, _)| x != n);
                }
            }
        }
        let refer = |n: u64| pr_ref(n, prs.iter().find(|(p, _)| p.number == n).map_or("", |(p, _)| p.url.as_str()));
        for (n, body) in notices {
            if let Err(e) = self.forge.create_comment(&repo, n, &body).await {
                errors.push(Error::from(e).context(refer(n)));
            }
        }
        for r in replies {
            if let Err(e) = self.forge.create_comment(&repo, r.pr, &r.body).await {
                errors.push(Error::from(e).context(refer(r.pr)));
            }
            if let Err(e) = self.forge.add_reaction(&repo, r.pr, r.comment, r.reaction).await {
                errors.push(Error::from(e).context(refer(r.pr)));
            }
        }
        // The rest of the cycle sees what was written.
        if let Some(Some(Ok(listing))) = repos.get_mut(url).map(|s| s.listing.as_mut()) {
            for (p, _) in prs {
                if let Some(slot) = listing.iter_mut().find(|x| x.number == p.number) {
                    *slot = p;
                }
            }
        }
    }

    fn comment_for(&self, repo: &RepoRef, app: &str, comment: templates::Comment) -> Result<String, Error> {
        let (namespace, name) = app.split_once('/').unwrap_or(("", app));
        let ctx = templates::CommentContext {
            app: templates::AppInfo::new(namespace, name),
            bot: templates::BotInfo { name: self.options.identity.name.clone() },
            forge: super::forge_info(self.forge.words(repo)),
            comment,
        };
        self.options.templates.comment(&ctx).map_err(Error::from)
    }

    fn render_reply(
        &self,
        repo: &RepoRef,
        meta: &PrMetadata,
        user: &str,
        base: &str,
        reply: Reply,
        pr_action: templates::PrAction,
    ) -> Result<String, Error> {
        let comment = match reply {
            Reply::Ack { command, name, alias, version, affected } => templates::Comment::CommandAck {
                user: user.to_string(),
                command,
                action: name.word().to_string(),
                alias,
                version,
                base: base.to_string(),
                affected: affected
                    .into_iter()
                    .map(|(alias, v)| {
                        // A pin at what git has: the version git had when the PR was written.
                        let v = v.or_else(|| meta.images.iter().find(|i| i.alias == alias).map(|i| i.from.clone()));
                        let version = v.unwrap_or_else(|| planner::Version::tag("what git has"));
                        templates::AffectedImage { alias, version }
                    })
                    .collect(),
                pr_action,
            },
            // The template escapes the problem as plain text: no code spans in it.
            Reply::Error { command, problem, usage } => templates::Comment::CommandError {
                user: user.to_string(),
                command,
                problem: problem.replace('`', ""),
                usage: usage.to_string(),
            },
            Reply::Refused { command } => templates::Comment::CommandRefused { user: user.to_string(), command },
            Reply::Help => templates::Comment::Help { commands: templates::CommandHelp::defaults(self.forge.words(repo).request) },
        };
        self.comment_for(repo, &meta.application, comment)
    }

    /// Rollback notices: once per merged PR and rolled-back version, on the merged PR.
    pub(super) async fn rollback_notices(
        &self,
        repos: &mut BTreeMap<String, RepoState>,
        id: &AppId,
        rollbacks: &[(String, planner::Delivery, planner::Version)],
        errors: &mut Vec<Error>,
    ) {
        let mut by_pr: BTreeMap<u64, Vec<&(String, planner::Delivery, planner::Version)>> = BTreeMap::new();
        for r in rollbacks.iter().filter(|(_, d, _)| !d.noticed) {
            by_pr.entry(r.1.pr).or_default().push(r);
        }
        for (number, items) in by_pr {
            let Some((url, pr)) = repos.iter().find_map(|(u, s)| {
                s.listing.as_ref()?.as_ref().ok()?.iter().find(|p| p.number == number && p.url == items[0].1.url).map(|p| (u.clone(), p.clone()))
            }) else {
                continue;
            };
            let Some(mut meta) = metadata::decode::<PrMetadata>(&pr.body) else { continue };
            let repo = repos[&url].repo.clone();
            let mut rolled_back = Vec::new();
            for (alias, d, now) in &items {
                let key = d.notice_key(alias);
                if !meta.ledger.notices.contains(&key) {
                    meta.ledger.notices.push(key);
                }
                rolled_back.push(templates::Rollback {
                    alias: alias.clone(),
                    image: d.image.clone(),
                    from: d.to.clone(),
                    to: now.clone(),
                    waiting_for: d.to.clone(),
                });
            }
            let body = match self.comment_for(&repo, &id.to_string(), templates::Comment::RollbackNoticed { base: pr.base.clone(), rolled_back }) {
                Ok(b) => format!("{}\n<!-- argocd-image-pr:rollback-noticed -->\n", b.trim_end()),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            // This cycle listed the comments before it got here.
            meta.ledger.seen_at = self.seen_at(&repo);
            let update = PrUpdate { title: None, body: Some(metadata::compose(&metadata::visible(&pr.body), &meta)), state: None };
            match self.forge.update_pull_request(&repo, number, &update).await {
                Ok(updated) => {
                    if let Some(Some(Ok(listing))) = repos.get_mut(&url).map(|s| s.listing.as_mut())
                        && let Some(slot) = listing.iter_mut().find(|x| x.number == number)
                    {
                        *slot = updated;
                    }
                }
                Err(e) => {
                    errors.push(Error::from(e).context(pr_ref(number, &pr.url)));
                    continue;
                }
            }
            if let Err(e) = self.forge.create_comment(&repo, number, &body).await {
                errors.push(Error::from(e).context(pr_ref(number, &pr.url)));
            }
        }
    }
}

/// A listed PR with its metadata, for the holds derivation.
pub(super) fn pr_view(pr: &PullRequest, meta: &PrMetadata) -> planner::PrView {
    planner::PrView {
        number: pr.number,
        url: pr.url.clone(),
        state: pr.state,
        metadata: meta.clone(),
        closed_at: pr.closed_at,
    }
}

/// What the command will do to the PR itself, for the acknowledgement.
fn pr_action(i: &planner::Interpreted, open: bool, meta: &PrMetadata, aliases: &[String]) -> templates::PrAction {
    use templates::PrAction;
    let Some(change) = &i.change else { return PrAction::None };
    match change {
        Change::Hold(holds) if open => {
            let held: BTreeSet<&str> = holds.iter().map(|h| h.alias.as_str()).collect();
            let pin_all = holds.len() == aliases.len() && holds.iter().all(|h| h.kind == planner::HoldKind::Pin && h.version.is_none());
            let remaining = meta.images.iter().filter(|i| !held.contains(i.alias.as_str())).count();
            if pin_all || (remaining == 0 && holds.iter().all(|h| h.version.is_none())) {
                PrAction::Closed
            } else {
                PrAction::Updated
            }
        }
        Change::Recreate => PrAction::Updated,
        _ => PrAction::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ledger(seen: Option<&str>, retry: Option<&str>) -> Ledger {
        Ledger { seen_at: seen.map(at), retry_since: retry.map(at), ..Ledger::default() }
    }

    #[test]
    fn the_listing_starts_at_the_newest_seen_at_or_an_older_comment_waiting_for_a_retry() {
        let cases = [
            ("newest seen_at wins", vec![ledger(Some("2024-05-01T10:00:00Z"), None), ledger(Some("2024-05-01T12:00:00Z"), None)], Some("2024-05-01T11:55:00Z")),
            ("a comment waiting since earlier", vec![ledger(Some("2024-05-01T12:00:00Z"), Some("2024-05-01T09:00:00Z"))], Some("2024-05-01T08:55:00Z")),
            ("a PR never looked at: every comment", vec![ledger(Some("2024-05-01T12:00:00Z"), None), ledger(None, None)], None),
            ("no PR: nothing to list from", vec![], None),
        ];
        for (name, ledgers, want) in cases {
            assert_eq!(listing_start(&ledgers), want.map(at), "case {name}");
        }
    }
}
