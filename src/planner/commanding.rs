//! What a comment command on a bot PR does to the Application's holds, and what the bot replies.
//! Pure: the engine lists the comments, asks the forge for the author's permission, and writes
//! the changed ledgers and the replies.

use chrono::{DateTime, Utc};

use super::holds::{HoldKind, Ledger, StoredHold, version_from_text};
use super::{ImageChange, Version};
use crate::commands::{Command, CommandError, CommandName};

/// Marks the bot's reply to comment `id`: a comment with a reply is handled (crash-safe).
pub fn reply_marker(id: u64) -> String {
    format!("<!-- argocd-image-pr:reply-to {id} -->")
}

/// The comment ids the bot's own comments reply to.
pub fn replied_to(bodies: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<u64> {
    let mut out = Vec::new();
    for body in bodies {
        let body = body.as_ref();
        let mut rest = body;
        while let Some(i) = rest.find("<!-- argocd-image-pr:reply-to ") {
            rest = &rest[i + "<!-- argocd-image-pr:reply-to ".len()..];
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                out.push(n);
            }
        }
    }
    out
}

/// Whether a comment is one of the bot's own: written by the login that opened the bot's pull
/// request. The markers in the bot's comments are read only from such comments; anyone can write
/// a marker into a comment of their own.
pub fn is_bot_comment(comment_author: &str, bot_login: &str) -> bool {
    !bot_login.is_empty() && comment_author.eq_ignore_ascii_case(bot_login)
}

/// A comment command with who wrote it and where.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub pr_open: bool,
    pub author: &'a str,
    pub can_write: bool,
    pub at: DateTime<Utc>,
    pub url: &'a str,
    /// Every image alias of the Application.
    pub aliases: &'a [String],
    /// What the PR proposes (or proposed).
    pub images: &'a [ImageChange],
}

/// What the bot says back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Carried out: the command, and the images it holds, releases or skips.
    Ack { command: String, name: CommandName, alias: Option<String>, version: Option<String>, affected: Vec<(String, Option<Version>)> },
    /// Malformed or impossible: the problem and the usage.
    Error { command: String, problem: String, usage: &'static str },
    /// The author lacks write access.
    Refused { command: String },
    Help,
}

/// What a command changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New holds stored on the PR the comment is on.
    Hold(Vec<StoredHold>),
    /// Lift pins (of one alias, or all) on every PR of the Application.
    Unpin(Option<String>),
    /// Regenerate the branch from the base.
    Recreate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreted {
    pub reply: Reply,
    pub change: Option<Change>,
}

/// The command as a person would write it (for replies).
pub fn command_text(c: &Command) -> String {
    let mut parts = vec![format!("/{}", c.name().word())];
    match c {
        Command::Pin { alias, version } => parts.extend(alias.iter().chain(version.iter()).cloned()),
        Command::Unpin { alias } => parts.extend(alias.iter().cloned()),
        Command::Ignore { alias, version } => {
            parts.extend(alias.iter().cloned());
            parts.push(version.clone());
        }
        Command::Recreate | Command::Help => {}
    }
    parts.join(" ")
}

/// One parsed command line of a comment → reply and change.
pub fn interpret(parsed: &Result<Command, CommandError>, ctx: &Context<'_>) -> Interpreted {
    let cmd = match parsed {
        Ok(c) => c,
        Err(e) => {
            let command = match e {
                CommandError::Unknown { word, .. } => format!("/{word}"),
                other => format!("/{}", other.command().word()),
            };
            // A reader's typo gets the refusal, not a lesson in syntax.
            if !ctx.can_write {
                return Interpreted { reply: Reply::Refused { command }, change: None };
            }
            return Interpreted { reply: Reply::Error { command, problem: e.to_string(), usage: e.usage() }, change: None };
        }
    };
    let command = command_text(cmd);
    if matches!(cmd, Command::Help) {
        return Interpreted { reply: Reply::Help, change: None };
    }
    if !ctx.can_write {
        return Interpreted { reply: Reply::Refused { command }, change: None };
    }
    let error = |problem: String| Interpreted {
        reply: Reply::Error { command: command.clone(), problem, usage: cmd.name().usage() },
        change: None,
    };
    let known = |alias: &str| ctx.aliases.iter().any(|a| a == alias);
    let unknown_alias = |alias: &str| {
        format!("this Application has no image {alias:?} (its images: {})", ctx.aliases.join(", "))
    };
    let stored = |alias: &str, kind, version: Option<Version>| StoredHold {
        kind,
        alias: alias.to_string(),
        version,
        by: ctx.author.to_string(),
        at: ctx.at,
        url: ctx.url.to_string(),
    };
    let ack = |alias: Option<&String>, version: Option<&String>, affected| Reply::Ack {
        command: command.clone(),
        name: cmd.name(),
        alias: alias.cloned(),
        version: version.cloned(),
        affected,
    };
    match cmd {
        Command::Pin { alias: None, .. } => {
            let holds: Vec<StoredHold> = ctx.aliases.iter().map(|a| stored(a, HoldKind::Pin, None)).collect();
            let affected = ctx.aliases.iter().map(|a| (a.clone(), None)).collect();
            Interpreted { reply: ack(None, None, affected), change: Some(Change::Hold(holds)) }
        }
        Command::Pin { alias: Some(alias), version } => {
            if !known(alias) {
                return error(unknown_alias(alias));
            }
            let v = version.as_deref().map(version_from_text);
            Interpreted {
                reply: ack(Some(alias), version.as_ref(), vec![(alias.clone(), v.clone())]),
                change: Some(Change::Hold(vec![stored(alias, HoldKind::Pin, v)])),
            }
        }
        Command::Unpin { alias } => {
            if let Some(a) = alias
                && !known(a)
            {
                return error(unknown_alias(a));
            }
            Interpreted { reply: ack(alias.as_ref(), None, vec![]), change: Some(Change::Unpin(alias.clone())) }
        }
        Command::Ignore { alias, version } => {
            let alias = match alias {
                Some(a) if known(a) => a.clone(),
                Some(a) => return error(unknown_alias(a)),
                None => {
                    let v = version_from_text(version);
                    let proposed: Vec<&ImageChange> = ctx
                        .images
                        .iter()
                        .filter(|i| i.to.tag == v.tag && v.tag.is_some() || v.digest.is_some() && i.to.digest == v.digest)
                        .collect();
                    match (proposed.as_slice(), ctx.aliases) {
                        ([one], _) => one.alias.clone(),
                        ([], [only]) => only.clone(),
                        _ => {
                            return error(format!(
                                "{version} could be a version of several images: say which, e.g. `/ignore {} {version}`",
                                ctx.aliases.first().map(String::as_str).unwrap_or("<alias>")
                            ));
                        }
                    }
                }
            };
            let v = version_from_text(version);
            Interpreted {
                reply: ack(Some(&alias), Some(version), vec![(alias.clone(), Some(v.clone()))]),
                change: Some(Change::Hold(vec![stored(&alias, HoldKind::Ignore, Some(v))])),
            }
        }
        Command::Recreate => {
            if !ctx.pr_open {
                return error("this pull request is not open; the bot recreates the branch of an open pull request only".into());
            }
            Interpreted { reply: ack(None, None, vec![]), change: Some(Change::Recreate) }
        }
        Command::Help => unreachable!("answered above"),
    }
}

/// Applies a change to the ledgers of the Application's PRs (`this` is the PR commented on).
/// Returns the PRs whose ledger changed.
pub fn apply_change(ledgers: &mut [(u64, Ledger)], this: u64, change: &Change) -> Vec<u64> {
    let mut changed = Vec::new();
    match change {
        Change::Hold(holds) => {
            if let Some((_, l)) = ledgers.iter_mut().find(|(n, _)| *n == this) {
                for h in holds {
                    // A newer pin of an image replaces an older one on the same PR.
                    if h.kind == HoldKind::Pin {
                        l.holds.retain(|x| !(x.kind == HoldKind::Pin && x.alias == h.alias));
                    }
                    if !l.holds.iter().any(|x| x.kind == h.kind && x.alias == h.alias && x.version == h.version) {
                        l.holds.push(h.clone());
                    }
                }
                changed.push(this);
            }
        }
        Change::Unpin(alias) => {
            for (n, l) in ledgers.iter_mut() {
                let before = l.holds.len();
                l.holds.retain(|h| !(h.kind == HoldKind::Pin && alias.as_ref().is_none_or(|a| *a == h.alias)));
                if l.holds.len() != before {
                    changed.push(*n);
                }
            }
        }
        Change::Recreate => {
            if let Some((_, l)) = ledgers.iter_mut().find(|(n, _)| *n == this) {
                l.recreate = true;
                changed.push(this);
            }
        }
    }
    changed
}
