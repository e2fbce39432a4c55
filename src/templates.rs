//! What the bot writes for people: pull-request title and body, commit message and comments,
//! rendered from Tera templates (defaults in `templates/`, replaceable from a directory), and
//! the hidden metadata block by which the bot recognises its own pull requests later.
//!
//! Every value reaching a template is untrusted (tags, digests, label and annotation values,
//! comment text). Autoescaping is on for every template: Markdown templates escape values for
//! Markdown and HTML ([`escape_markdown`]), plain-text templates (title, commit message) keep
//! values on one line without control characters ([`escape_text`]). Values are data: they are
//! never rendered as templates. The metadata block is not part of any template, so an override
//! cannot break it. The variables are documented in `docs/templates.md`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tera::{Context, Filter, Tera};

use crate::domain::{DOCKER_HUB, ImageName, ImageReference, Version};
use crate::strategy::ChangeKind;

// ---------------------------------------------------------------------------------------------
// Template names

/// One template the bot renders; its file name is what an override directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplateName {
    PrTitle,
    PrBody,
    CommitMessage,
    ClosedObsolete,
    ClosedIgnored,
    ForeignCommit,
    RollbackNoticed,
    CommandAck,
    CommandError,
    CommandRefused,
    Help,
}

/// How a template's output is read, and so how values are escaped in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Markdown,
    Text,
}

impl TemplateName {
    pub const ALL: [TemplateName; 11] = [
        TemplateName::PrTitle,
        TemplateName::PrBody,
        TemplateName::CommitMessage,
        TemplateName::ClosedObsolete,
        TemplateName::ClosedIgnored,
        TemplateName::ForeignCommit,
        TemplateName::RollbackNoticed,
        TemplateName::CommandAck,
        TemplateName::CommandError,
        TemplateName::CommandRefused,
        TemplateName::Help,
    ];

    /// The file name, in `templates/` and in an override directory.
    pub fn file_name(self) -> &'static str {
        match self {
            TemplateName::PrTitle => "pr-title.txt.tera",
            TemplateName::PrBody => "pr-body.md.tera",
            TemplateName::CommitMessage => "commit-message.txt.tera",
            TemplateName::ClosedObsolete => "closed-obsolete.md.tera",
            TemplateName::ClosedIgnored => "closed-ignored.md.tera",
            TemplateName::ForeignCommit => "foreign-commit.md.tera",
            TemplateName::RollbackNoticed => "rollback-noticed.md.tera",
            TemplateName::CommandAck => "command-ack.md.tera",
            TemplateName::CommandError => "command-error.md.tera",
            TemplateName::CommandRefused => "command-refused.md.tera",
            TemplateName::Help => "help.md.tera",
        }
    }

    pub fn from_file_name(name: &str) -> Option<TemplateName> {
        TemplateName::ALL.into_iter().find(|t| t.file_name() == name)
    }

    fn default_source(self) -> &'static str {
        match self {
            TemplateName::PrTitle => include_str!("../templates/pr-title.txt.tera"),
            TemplateName::PrBody => include_str!("../templates/pr-body.md.tera"),
            TemplateName::CommitMessage => include_str!("../templates/commit-message.txt.tera"),
            TemplateName::ClosedObsolete => include_str!("../templates/closed-obsolete.md.tera"),
            TemplateName::ClosedIgnored => include_str!("../templates/closed-ignored.md.tera"),
            TemplateName::ForeignCommit => include_str!("../templates/foreign-commit.md.tera"),
            TemplateName::RollbackNoticed => include_str!("../templates/rollback-noticed.md.tera"),
            TemplateName::CommandAck => include_str!("../templates/command-ack.md.tera"),
            TemplateName::CommandError => include_str!("../templates/command-error.md.tera"),
            TemplateName::CommandRefused => include_str!("../templates/command-refused.md.tera"),
            TemplateName::Help => include_str!("../templates/help.md.tera"),
        }
    }

    fn format(self) -> Format {
        match self {
            TemplateName::PrTitle | TemplateName::CommitMessage => Format::Text,
            _ => Format::Markdown,
        }
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// One file of an override directory: where it was read (errors name it) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideFile {
    pub path: PathBuf,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The override directory or one of its files could not be read.
    #[error("cannot read templates from {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file in the override directory is not one of the bot's templates.
    #[error("{path}: not a template the bot knows; expected one of: {expected}")]
    UnknownFile { path: PathBuf, expected: String },
    /// An override does not parse.
    #[error("{}: {message}", location(path, *line))]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
    /// An override parses but fails on the example context (e.g. an unknown variable).
    #[error("{path}: fails to render an example: {message}")]
    Check { path: PathBuf, message: String },
    /// Rendering failed; names the template.
    #[error("template {template}: {message}")]
    Render { template: TemplateName, message: String },
}

fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// Tera's error with its causes, on one line.
fn error_chain(e: &tera::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Line and message of a parse error; the parser reports ` --> line:col` and `= expected ...`.
fn syntax_error(e: &tera::Error) -> (Option<usize>, String) {
    let mut text = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        text.push('\n');
        source = s.source();
    }
    let line = text.lines().find_map(|l| {
        let pos = l.trim_start().strip_prefix("--> ")?;
        pos.split(':').next()?.trim().parse().ok()
    });
    let detail = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("= "))
        .collect::<Vec<_>>()
        .join("; ");
    let message = if detail.is_empty() {
        error_chain(e)
    } else {
        format!("syntax error: {detail}")
    };
    (line, message)
}

// ---------------------------------------------------------------------------------------------
// Contexts

/// The Argo CD Application a pull request or comment is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub namespace: String,
    pub name: String,
    /// Argo CD project, `default` unless the Application says otherwise.
    pub project: String,
    pub destination: Destination,
    /// What Argo CD reports running, when the bot read the Application from the cluster.
    pub live: Option<Live>,
}

impl AppInfo {
    pub fn new(namespace: &str, name: &str) -> Self {
        AppInfo {
            namespace: namespace.to_string(),
            name: name.to_string(),
            project: "default".to_string(),
            destination: Destination::default(),
            live: None,
        }
    }
}

/// The Application's `status`: sync and health, the revision synced, the running images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub sync: Option<String>,
    pub health: Option<String>,
    pub revision: Option<String>,
    /// `status.summary.images`, as Argo CD lists them.
    pub images: Vec<String>,
}

/// `spec.destination` of the Application: a cluster by URL or by name, and a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub server: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

/// The GitOps repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInfo {
    /// `repoURL` as the Application writes it.
    pub url: String,
    /// `owner/name` on the forge.
    pub slug: String,
}

/// Templates see both fields of a version, `null` when absent (`{{ i.to.digest }}` must not
/// fail on a version without digest), where the stored form leaves them out.
fn with_nulls<S: serde::Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Both<'a> {
        tag: &'a Option<String>,
        digest: &'a Option<String>,
    }
    Both { tag: &v.tag, digest: &v.digest }.serialize(s)
}

/// How big a change is, for people reading the proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Major,
    Minor,
    Patch,
    PreRelease,
    Digest,
    /// newest-build / alphabetical: no version order to speak of.
    Build,
}

impl From<ChangeKind> for Change {
    fn from(k: ChangeKind) -> Self {
        match k {
            ChangeKind::Major => Change::Major,
            ChangeKind::Minor => Change::Minor,
            ChangeKind::Patch => Change::Patch,
            ChangeKind::PreRelease => Change::PreRelease,
            ChangeKind::Digest => Change::Digest,
            ChangeKind::Build => Change::Build,
        }
    }
}

/// One image the pull request moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChange {
    pub alias: String,
    /// Normalized repository, e.g. `docker.io/library/nginx`.
    pub image: String,
    /// A page about the image for people, see [`registry_url`].
    pub registry_url: String,
    #[serde(serialize_with = "with_nulls")]
    pub from: Version,
    #[serde(serialize_with = "with_nulls")]
    pub to: Version,
    pub change: Change,
    /// `created` of the proposed image, RFC 3339.
    pub build_date: Option<String>,
    /// The platforms the image was checked for, `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// The proposed tag names no version (`latest`) and no digest is written with it: it may point
    /// to another image by the time the PR is merged.
    #[serde(default)]
    pub moving: bool,
    /// What runs now (tag or digest), from the Application's `status.summary.images`: `None`
    /// when the status is not known, or lists no image of this name.
    pub running: Option<String>,
}

impl ImageChange {
    pub fn new(alias: &str, image: &ImageName, from: Version, to: Version, change: Change) -> Self {
        // With a digest written beside it, even `latest` names one image.
        let moving = to.digest.is_none() && to.tag.as_deref().is_some_and(crate::strategy::is_moving_tag);
        ImageChange {
            alias: alias.to_string(),
            image: image.to_string(),
            registry_url: registry_url(image),
            from,
            to,
            change,
            build_date: None,
            platforms: Vec::new(),
            moving,
            running: None,
        }
    }

    /// What runs now of this image, found among `live` (`status.summary.images`) by name.
    pub fn with_running(mut self, image: &ImageName, live: Option<&Live>) -> Self {
        self.running = live.and_then(|l| {
            l.images.iter().find_map(|entry| {
                let running = ImageReference::parse(entry).ok()?;
                (running.name == *image).then(|| running.digest.or(running.tag).unwrap_or_else(|| "latest".into()))
            })
        });
        self
    }

    pub fn with_build_date(mut self, created: Option<DateTime<Utc>>) -> Self {
        self.build_date = created.map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true));
        self
    }

    pub fn with_platforms<P: fmt::Display>(mut self, platforms: &[P]) -> Self {
        self.platforms = platforms.iter().map(|p| p.to_string()).collect();
        self
    }
}

/// A file the commit changes, relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
}

/// One comment command, for the body's "how to hold" table and for `help`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandHelp {
    /// E.g. `/pin <alias> <version>`.
    pub usage: String,
    /// One line of plain text (no Markdown: it is escaped).
    pub summary: String,
}

impl CommandHelp {
    pub fn new(usage: &str, summary: &str) -> Self {
        CommandHelp { usage: usage.to_string(), summary: summary.to_string() }
    }

    /// The commands of the product, in the order `/help` lists them, for a forge whose change
    /// requests are called `request` (`pull request`, `merge request`).
    pub fn defaults(request: &str) -> Vec<CommandHelp> {
        vec![
            CommandHelp::new("/pin", &format!("Hold every image at the version git has now and close this {request}.")),
            CommandHelp::new("/pin <alias>", "Hold one image at the version git has now."),
            CommandHelp::new(
                "/pin <alias> <version>",
                &format!("Hold one image at exactly that version; this {request} proposes it if git has another."),
            ),
            CommandHelp::new("/unpin [<alias>]", "Release the hold on one image, or on all of them."),
            CommandHelp::new("/ignore <version>", "Skip one version; newer versions are still proposed."),
            CommandHelp::new("/recreate", "Regenerate the branch from the base, dropping commits by others."),
            CommandHelp::new("/help", "List these commands."),
        ]
    }
}

/// Who is writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotInfo {
    pub name: String,
}

impl Default for BotInfo {
    fn default() -> Self {
        BotInfo { name: "argocd-image-pr".to_string() }
    }
}

/// How the forge the text goes to names things (`forge.request`, `forge.access`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeInfo {
    /// `pull request`; on GitLab `merge request`.
    pub request: String,
    /// Who may command the bot: `write access to the repository`; on GitLab `the Developer role
    /// or higher in the project`.
    pub access: String,
}

impl Default for ForgeInfo {
    fn default() -> Self {
        ForgeInfo { request: "pull request".into(), access: "write access to the repository".into() }
    }
}

/// What the title, body and commit message of one pull request are rendered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrContext {
    pub app: AppInfo,
    pub repo: RepoInfo,
    /// The branch the pull request merges into.
    pub base: String,
    /// The bot's branch.
    pub branch: String,
    pub images: Vec<ImageChange>,
    pub files: Vec<FileChange>,
    /// The pull requests of the same update in the Application's other repositories.
    pub related: Vec<RelatedPr>,
    pub commands: Vec<CommandHelp>,
    pub bot: BotInfo,
    pub forge: ForgeInfo,
}

/// The part of one update in another repository: its pull request when it exists, else the
/// branch it will come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedPr {
    pub repo: RepoInfo,
    pub branch: String,
    pub url: Option<String>,
}

/// Why a pull request is closed as obsolete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObsoleteReason {
    /// The base already has the proposed versions (someone did it by hand).
    BaseHasVersions,
    /// The Application no longer carries the annotations.
    AnnotationsRemoved,
    /// The Application is gone from git.
    ApplicationRemoved,
}

/// A commit on the bot's branch that the bot did not make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub sha: String,
    /// Author name or forge login, when known.
    pub author: Option<String>,
}

/// One image of a merged pull request that git moved back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub alias: String,
    pub image: String,
    /// The version the pull request delivered and that was rolled back.
    #[serde(serialize_with = "with_nulls")]
    pub from: Version,
    /// The version git has now.
    #[serde(serialize_with = "with_nulls")]
    pub to: Version,
    /// The bot proposes only versions newer than this one.
    #[serde(serialize_with = "with_nulls")]
    pub waiting_for: Version,
}

/// An image and a version, as a command left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedImage {
    pub alias: String,
    #[serde(serialize_with = "with_nulls")]
    pub version: Version,
}

/// What a command did to the pull request itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrAction {
    #[default]
    None,
    Updated,
    Closed,
    Reopened,
}

/// The comments the bot posts; each has its own template and variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Comment {
    ClosedObsolete {
        reason: ObsoleteReason,
        base: String,
        branch: String,
        /// What the pull request proposed.
        images: Vec<ImageChange>,
    },
    ClosedIgnored {
        /// What the pull request proposed; the `to` versions are now ignored.
        images: Vec<ImageChange>,
    },
    ForeignCommit {
        base: String,
        branch: String,
        commit: CommitInfo,
    },
    RollbackNoticed {
        base: String,
        rolled_back: Vec<Rollback>,
    },
    CommandAck {
        /// Login of who commented.
        user: String,
        /// The command line as written.
        command: String,
        /// `pin`, `unpin`, `ignore` or `recreate`.
        action: String,
        alias: Option<String>,
        version: Option<String>,
        base: String,
        /// The images the command holds, releases or skips, with their versions.
        affected: Vec<AffectedImage>,
        pr_action: PrAction,
    },
    CommandError {
        user: String,
        command: String,
        /// What is wrong, plain text.
        problem: String,
        /// The command's usage, e.g. `/pin [<alias> [<version>]]`.
        usage: String,
    },
    CommandRefused {
        user: String,
        command: String,
    },
    Help {
        commands: Vec<CommandHelp>,
    },
}

impl Comment {
    pub fn template(&self) -> TemplateName {
        match self {
            Comment::ClosedObsolete { .. } => TemplateName::ClosedObsolete,
            Comment::ClosedIgnored { .. } => TemplateName::ClosedIgnored,
            Comment::ForeignCommit { .. } => TemplateName::ForeignCommit,
            Comment::RollbackNoticed { .. } => TemplateName::RollbackNoticed,
            Comment::CommandAck { .. } => TemplateName::CommandAck,
            Comment::CommandError { .. } => TemplateName::CommandError,
            Comment::CommandRefused { .. } => TemplateName::CommandRefused,
            Comment::Help { .. } => TemplateName::Help,
        }
    }
}

/// What a comment is rendered from: the Application and the bot, plus the comment's own values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommentContext {
    pub app: AppInfo,
    pub bot: BotInfo,
    pub forge: ForgeInfo,
    #[serde(flatten)]
    pub comment: Comment,
}

// ---------------------------------------------------------------------------------------------
// Links

/// A page about the image for people: Docker Hub's repository page, the GHCR package page
/// (ghcr.io redirects a browser there), Quay's and ECR Public Gallery's pages, and
/// `https://<registry>/<repository>` elsewhere.
pub fn registry_url(image: &ImageName) -> String {
    let repo = &image.repository;
    match image.registry.as_str() {
        DOCKER_HUB => match repo.strip_prefix("library/") {
            Some(official) if !official.contains('/') => format!("https://hub.docker.com/_/{official}"),
            _ => format!("https://hub.docker.com/r/{repo}"),
        },
        "quay.io" => format!("https://quay.io/repository/{repo}"),
        "public.ecr.aws" => format!("https://gallery.ecr.aws/{repo}"),
        // A loopback registry speaks plain http (registries.conf resolution does the same).
        host if crate::domain::is_loopback(host) => format!("http://{host}/{repo}"),
        host => format!("https://{host}/{repo}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Escaping

/// Characters removed from values: control characters and the bidirectional overrides that
/// make text read differently from what it is.
fn is_stripped(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\t' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Escapes a value for Markdown and the HTML GitHub allows in it: `< > & " '` become entities
/// (which also hold inside raw HTML blocks), every other character that Markdown gives a meaning
/// to gets a backslash, line breaks become spaces and control characters are removed.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            c if is_line_break(c) => out.push(' '),
            c if is_stripped(c) => {}
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '-' | '.' | '!' | '|'
            | '~' | '=' | '$' | '@' | '^' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes a value for one line of plain text (a title, a commit message): line breaks become
/// spaces and control characters are removed; nothing else has a meaning there.
pub fn escape_text(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            if is_line_break(c) {
                Some(' ')
            } else if is_stripped(c) {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// An inline code span that holds `s` literally: the fence is one backtick longer than the
/// longest run in `s`, so `s` cannot close it. `|` is escaped so the span also works in a table
/// cell (GitHub drops that backslash in tables).
pub fn code_span(s: &str) -> String {
    let s = escape_text(s).replace('|', "\\|");
    if s.is_empty() {
        return String::new();
    }
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // A span that starts or ends with a backtick needs a space to separate it from the fence;
    // one space on each side is stripped again when both are there.
    let pad = s.starts_with('`') || s.ends_with('`') || (s.starts_with(' ') && s.ends_with(' ') && s.trim() != "");
    if pad { format!("{fence} {s} {fence}") } else { format!("{fence}{s}{fence}") }
}

/// An http(s) URL made safe for a Markdown link destination or an HTML attribute; anything else
/// becomes `#`.
pub fn safe_url(s: &str) -> String {
    let Ok(url) = url::Url::parse(s.trim()) else { return "#".to_string() };
    if !matches!(url.scheme(), "http" | "https") {
        return "#".to_string();
    }
    let mut out = String::new();
    for c in url.as_str().chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '(' | ')' | '<' | '>' | '"' | '\'' | '`' | '|' | '\\' | ' ' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `sha256:` and the first 12 hex digits.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", hex.chars().take(12).collect::<String>()),
        None => d.chars().take(12).collect(),
    }
}

/// A version for people: `tag`, `tag@sha256:0123456789ab` when asked for the digest too,
/// the short digest alone when there is no tag, `none` when there is neither.
fn version_text(v: &Value, with_digest: bool) -> String {
    let field = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (field("tag"), field("digest")) {
        (Some(t), Some(d)) if with_digest => format!("{t}@{}", short_digest(d)),
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => short_digest(d),
        (None, None) => "none".to_string(),
    }
}

fn string_arg(name: &str, v: &Value) -> tera::Result<String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(tera::Error::msg(format!("filter `{name}` expects a string"))),
    }
}

/// A filter whose output is already escaped for its place, so autoescaping leaves it alone.
struct SafeFilter(fn(&str) -> String, &'static str);

impl Filter for SafeFilter {
    fn filter(&self, value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
        Ok(Value::String((self.0)(&string_arg(self.1, value)?)))
    }

    fn is_safe(&self) -> bool {
        true
    }
}

fn new_tera(format: Format) -> Tera {
    let mut tera = Tera::default();
    // Every template, whatever its name, is escaped.
    tera.autoescape_on(vec![""]);
    tera.set_escape_fn(match format {
        Format::Markdown => escape_markdown,
        Format::Text => escape_text,
    });
    tera.register_filter("code", SafeFilter(code_span, "code"));
    tera.register_filter("url", SafeFilter(safe_url, "url"));
    // Not safe: the results go through autoescaping like any other value.
    tera.register_filter("short_digest", |v: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(short_digest(&string_arg("short_digest", v)?)))
    });
    tera.register_filter("short_sha", |v: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(string_arg("short_sha", v)?.chars().take(7).collect()))
    });
    tera.register_filter("version", |v: &Value, args: &HashMap<String, Value>| {
        let with_digest = args.get("digest").and_then(Value::as_bool).unwrap_or(false);
        Ok(Value::String(version_text(v, with_digest)))
    });
    // Templates may come from a repository; they must not read the bot's environment (tokens).
    tera.register_function("get_env", |_: &HashMap<String, Value>| -> tera::Result<Value> {
        Err(tera::Error::msg("get_env is disabled in argocd-image-pr templates"))
    });
    tera
}

// ---------------------------------------------------------------------------------------------
// Templates

/// The loaded templates; pure to render, shareable across threads.
#[derive(Clone)]
pub struct Templates {
    markdown: Tera,
    text: Tera,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The templates shipped in `templates/`.
    pub fn defaults() -> Templates {
        let mut t = Templates { markdown: new_tera(Format::Markdown), text: new_tera(Format::Text) };
        for name in TemplateName::ALL {
            t.tera_mut(name)
                .add_raw_template(name.file_name(), name.default_source())
                .unwrap_or_else(|e| panic!("default template {name} does not parse: {}", error_chain(&e)));
        }
        t
    }

    /// The defaults, with each override replacing the default of the same file name (the
    /// override directory is read by [`Templates::from_dir`], at the edge). Each override is
    /// rendered once with example values, so a misspelt variable fails here, not mid-cycle.
    pub fn with_overrides(overrides: Vec<OverrideFile>) -> Result<Templates, TemplateError> {
        let mut t = Templates::defaults();
        let mut replaced = Vec::new();
        for OverrideFile { path, source } in overrides {
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(name) = TemplateName::from_file_name(&file_name) else {
                let expected = TemplateName::ALL.iter().map(|n| n.file_name()).collect::<Vec<_>>().join(", ");
                return Err(TemplateError::UnknownFile { path, expected });
            };
            t.tera_mut(name).add_raw_template(name.file_name(), &source).map_err(|e| {
                let (line, message) = syntax_error(&e);
                TemplateError::Syntax { path: path.clone(), line, message }
            })?;
            replaced.push((name, path));
        }
        for (name, path) in replaced {
            for example in examples::contexts(name) {
                t.render(name, &example)
                    .map_err(|e| TemplateError::Check { path: path.clone(), message: e.to_string() })?;
            }
        }
        Ok(t)
    }

    fn tera_mut(&mut self, name: TemplateName) -> &mut Tera {
        match name.format() {
            Format::Markdown => &mut self.markdown,
            Format::Text => &mut self.text,
        }
    }

    /// Renders one template with any serializable context (an object).
    pub fn render<T: Serialize>(&self, name: TemplateName, context: &T) -> Result<String, TemplateError> {
        let err = |message: String| TemplateError::Render { template: name, message };
        let context = Context::from_serialize(context).map_err(|e| err(error_chain(&e)))?;
        let tera = match name.format() {
            Format::Markdown => &self.markdown,
            Format::Text => &self.text,
        };
        let out = tera.render(name.file_name(), &context).map_err(|e| err(error_chain(&e)))?;
        Ok(match name {
            TemplateName::PrTitle => out.split_whitespace().collect::<Vec<_>>().join(" "),
            _ => tidy(&out),
        })
    }

    /// One line.
    pub fn pr_title(&self, ctx: &PrContext) -> Result<String, TemplateError> {
        self.render(TemplateName::PrTitle, ctx)
    }

    /// Markdown, without the metadata block: [`crate::metadata::compose`] appends it.
    pub fn pr_body(&self, ctx: &PrContext) -> Result<String, TemplateError> {
        self.render(TemplateName::PrBody, ctx)
    }

    /// Subject, blank line, body; ends with a newline.
    pub fn commit_message(&self, ctx: &PrContext) -> Result<String, TemplateError> {
        self.render(TemplateName::CommitMessage, ctx)
    }

    pub fn comment(&self, ctx: &CommentContext) -> Result<String, TemplateError> {
        self.render(ctx.comment.template(), ctx)
    }
}

/// Trailing spaces off every line, no leading or trailing blank lines, one final newline.
fn tidy(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
    let text = lines.join("\n");
    let text = text.trim_matches('\n');
    if text.is_empty() { String::new() } else { format!("{text}\n") }
}

// ---------------------------------------------------------------------------------------------
// Examples

/// Realistic contexts: documentation, the check of overrides, and the tests.
pub mod examples {
    use super::*;

    pub fn app() -> AppInfo {
        AppInfo {
            namespace: "argocd".into(),
            name: "shop-prod".into(),
            project: "shop".into(),
            destination: Destination {
                server: Some("https://kubernetes.default.svc".into()),
                name: None,
                namespace: Some("shop".into()),
            },
            live: Some(Live {
                sync: Some("Synced".into()),
                health: Some("Healthy".into()),
                revision: Some("8d3c9b1f2e4a".into()),
                images: vec!["ghcr.io/acme/shop-api:1.1.9".into(), "nginx:stable".into(), "docker.io/library/redis:7.2.4".into()],
            }),
        }
    }

    fn image(s: &str) -> ImageName {
        ImageName::parse(s).expect("example image")
    }

    pub fn images() -> Vec<ImageChange> {
        let created = DateTime::parse_from_rfc3339("2024-05-02T09:30:00Z").unwrap().with_timezone(&Utc);
        vec![
            ImageChange::new(
                "api",
                &image("ghcr.io/acme/shop-api"),
                Version::new(Some("1.2.0"), Some("sha256:1111111111111111111111111111111111111111111111111111111111111111")),
                Version::new(Some("1.3.0"), Some("sha256:2222222222222222222222222222222222222222222222222222222222222222")),
                Change::Minor,
            )
            .with_build_date(Some(created))
            .with_platforms(&["linux/amd64", "linux/arm64"])
            .with_running(&image("ghcr.io/acme/shop-api"), app().live.as_ref()),
            ImageChange::new(
                "web",
                &image("nginx"),
                Version::new(Some("stable"), Some("sha256:3333333333333333333333333333333333333333333333333333333333333333")),
                Version::new(Some("stable"), Some("sha256:4444444444444444444444444444444444444444444444444444444444444444")),
                Change::Digest,
            )
            .with_platforms(&["linux/amd64"])
            .with_running(&image("nginx"), app().live.as_ref()),
        ]
    }

    pub fn pr() -> PrContext {
        PrContext {
            app: app(),
            repo: RepoInfo { url: "https://github.com/acme/gitops.git".into(), slug: "acme/gitops".into() },
            base: "main".into(),
            branch: "argocd-image-pr/argocd/shop-prod".into(),
            images: images(),
            files: vec![
                FileChange { path: "apps/shop/prod/kustomization.yaml".into() },
                FileChange { path: "apps/shop/prod/values.yaml".into() },
            ],
            related: vec![],
            commands: CommandHelp::defaults("pull request"),
            bot: BotInfo::default(),
            forge: ForgeInfo::default(),
        }
    }

    /// One example per variant that changes the wording.
    pub fn comments() -> Vec<Comment> {
        let affected = |alias: &str, tag: &str| AffectedImage { alias: alias.into(), version: Version::tag(tag) };
        let ack = |action: &str, alias: Option<&str>, version: Option<&str>, affected, pr_action| Comment::CommandAck {
            user: "alice".into(),
            command: format!(
                "/{action}{}{}",
                alias.map(|a| format!(" {a}")).unwrap_or_default(),
                version.map(|v| format!(" {v}")).unwrap_or_default()
            ),
            action: action.into(),
            alias: alias.map(str::to_string),
            version: version.map(str::to_string),
            base: "main".into(),
            affected,
            pr_action,
        };
        let mut out = Vec::new();
        for reason in [ObsoleteReason::BaseHasVersions, ObsoleteReason::AnnotationsRemoved, ObsoleteReason::ApplicationRemoved] {
            out.push(Comment::ClosedObsolete {
                reason,
                base: "main".into(),
                branch: "argocd-image-pr/argocd/shop-prod".into(),
                images: images(),
            });
        }
        out.push(Comment::ClosedIgnored { images: images() });
        out.push(Comment::ForeignCommit {
            base: "main".into(),
            branch: "argocd-image-pr/argocd/shop-prod".into(),
            commit: CommitInfo { sha: "9fceb02d0ae598e95dc970b74767f19372d61af8".into(), author: Some("bob".into()) },
        });
        out.push(Comment::RollbackNoticed {
            base: "main".into(),
            rolled_back: vec![Rollback {
                alias: "api".into(),
                image: "ghcr.io/acme/shop-api".into(),
                from: Version::tag("1.3.0"),
                to: Version::tag("1.2.0"),
                waiting_for: Version::tag("1.3.0"),
            }],
        });
        out.push(ack("pin", None, None, vec![affected("api", "1.2.0"), affected("web", "stable")], PrAction::Closed));
        out.push(ack("pin", Some("api"), None, vec![affected("api", "1.2.0")], PrAction::Updated));
        out.push(ack("pin", Some("api"), Some("1.2.5"), vec![affected("api", "1.2.5")], PrAction::Updated));
        out.push(ack("unpin", Some("api"), None, vec![], PrAction::None));
        out.push(ack("unpin", None, None, vec![], PrAction::Reopened));
        out.push(ack("ignore", None, Some("1.3.0"), vec![affected("api", "1.3.0")], PrAction::Updated));
        out.push(ack("recreate", None, None, vec![], PrAction::Updated));
        out.push(Comment::CommandError {
            user: "alice".into(),
            command: "/pin api 1.2.0 now".into(),
            problem: "too many arguments".into(),
            usage: "/pin [<alias> [<version>]]".into(),
        });
        out.push(Comment::CommandRefused { user: "mallory".into(), command: "/pin".into() });
        out.push(Comment::Help { commands: CommandHelp::defaults("pull request") });
        out
    }

    pub fn comment(c: Comment) -> CommentContext {
        CommentContext { app: app(), bot: BotInfo::default(), forge: ForgeInfo::default(), comment: c }
    }

    /// Every example context for one template, as JSON.
    pub fn contexts(name: TemplateName) -> Vec<Value> {
        match name {
            TemplateName::PrTitle | TemplateName::PrBody | TemplateName::CommitMessage => {
                let mut one = pr();
                one.images.truncate(1);
                vec![serde_json::to_value(pr()).unwrap(), serde_json::to_value(one).unwrap()]
            }
            _ => comments()
                .into_iter()
                .filter(|c| c.template() == name)
                .map(|c| serde_json::to_value(comment(c)).unwrap())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every default template rendered with the examples, labelled for the failure message.
    fn rendered_examples() -> Vec<(String, String)> {
        let t = Templates::defaults();
        let pr = examples::pr();
        let mut one = examples::pr();
        one.images.truncate(1);
        let mut out = vec![
            ("pr-title".to_string(), t.pr_title(&pr).unwrap()),
            ("pr-title, one image".to_string(), t.pr_title(&one).unwrap()),
            ("pr-body".to_string(), t.pr_body(&pr).unwrap()),
            ("commit-message".to_string(), t.commit_message(&pr).unwrap()),
            ("commit-message, one image".to_string(), t.commit_message(&one).unwrap()),
        ];
        for (i, c) in examples::comments().into_iter().enumerate() {
            let label = format!("{} #{i}", c.template());
            out.push((label, t.comment(&examples::comment(c)).unwrap()));
        }
        out
    }

    #[test]
    fn default_templates_render_the_examples_exactly() {
        let got = rendered_examples();
        let mut failures = Vec::new();
        for (i, (label, text)) in got.iter().enumerate() {
            let want = SNAPSHOTS.get(i).map(|(l, w)| (*l, *w));
            if want != Some((label.as_str(), text.as_str())) {
                failures.push(format!("case {label}:\n(\"{label}\", r#\"{text}\"#),"));
            }
        }
        assert!(failures.is_empty() && got.len() == SNAPSHOTS.len(), "snapshots differ:\n{}", failures.join("\n"));
    }

    const HOSTILE: &[&str] = &[
        "1.0.0<script>alert(1)</script>",
        "[click](http://evil)",
        "{{ secret }}{% if true %}x{% endif %}{# c #}",
        "<!-- -->",
        "-->",
        "a|b||c\\|d",
        "line1\nline2\r\n\n# heading\n- item\n\n    code",
        "``` `x` ``",
        "javascript:alert(1)",
        "\u{1b}[31mred\u{202e}dlrow\u{0}",
        "**bold** _it_ ~~s~~ @everyone #1 ![img](http://evil/x.png) &lt;b&gt; &#60;",
        "<img src=x onerror=alert(1)>",
        "=====",
    ];

    /// Fields that select wording (typed enums in Rust); every other string is untrusted.
    const CONTROL_FIELDS: &[&str] = &["change", "reason", "pr_action", "action"];

    fn replace_strings(v: &mut Value, with: &str) {
        match v {
            Value::String(s) => *s = with.to_string(),
            Value::Array(a) => a.iter_mut().for_each(|v| replace_strings(v, with)),
            Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    if !CONTROL_FIELDS.contains(&k.as_str()) {
                        replace_strings(v, with);
                    }
                }
            }
            _ => {}
        }
    }

    /// The line without its code spans, found the way CommonMark finds them: a run of n
    /// backticks up to the next run of exactly n; a backslash-escaped backtick opens nothing.
    fn strip_code_spans(line: &str) -> String {
        let chars: Vec<char> = line.chars().collect();
        let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' if i + 1 < chars.len() => {
                    out.push(chars[i]);
                    out.push(chars[i + 1]);
                    i += 2;
                }
                '`' => {
                    let n = run_at(i);
                    let mut j = i + n;
                    let mut close = None;
                    while j < chars.len() {
                        if chars[j] == '`' {
                            let m = run_at(j);
                            if m == n {
                                close = Some(j + m);
                                break;
                            }
                            j += m;
                        } else {
                            j += 1;
                        }
                    }
                    match close {
                        Some(end) => {
                            out.push_str("CODE");
                            i = end;
                        }
                        None => {
                            (0..n).for_each(|_| out.push('`'));
                            i += n;
                        }
                    }
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        out
    }

    /// `|` that split a GFM table row: those with no backslash right before them.
    fn cell_breaks(line: &str) -> usize {
        let mut prev = ' ';
        let mut n = 0;
        for c in line.chars() {
            if c == '|' && prev != '\\' {
                n += 1;
            }
            prev = c;
        }
        n
    }

    /// Renders every template with every example, once with every untrusted string set to
    /// `payload` and once set to a harmless word, and hands both outputs to `check`.
    fn for_each_rendering(payload: &str, mut check: impl FnMut(&str, TemplateName, &str, &str)) {
        let t = Templates::defaults();
        for name in TemplateName::ALL {
            for example in examples::contexts(name) {
                let mut hostile = example.clone();
                replace_strings(&mut hostile, payload);
                let mut plain = example.clone();
                replace_strings(&mut plain, "word");
                let got = t.render(name, &hostile).unwrap_or_else(|e| panic!("payload {payload:?}: {e}"));
                let benign = t.render(name, &plain).unwrap();
                check(payload, name, &got, &benign);
            }
        }
    }

    #[test]
    fn untrusted_values_cannot_change_the_markdown() {
        for payload in HOSTILE {
            for_each_rendering(payload, |payload, name, got, benign| {
                let case = format!("template {name}, payload {payload:?}:\n{got}");
                assert!(!got.contains(['\u{1b}', '\u{202e}', '\u{0}']), "control characters kept; {case}");
                // No new lines, so no headings, list items, code blocks or closed paragraphs.
                assert_eq!(got.lines().count(), benign.lines().count(), "line count changed; {case}");
                if name.format() == Format::Text {
                    // Plain text has no markup; the value shows as it is, on its line.
                    if !payload.contains(['\n', '\u{1b}']) {
                        assert!(got.contains(payload), "value not shown literally; {case}");
                    }
                    return;
                }
                for (line, plain) in got.lines().zip(benign.lines()) {
                    let outside = strip_code_spans(line);
                    let without_tags = ["<details>", "<summary>", "</summary>", "</details>"]
                        .iter()
                        .fold(outside.clone(), |s, tag| s.replace(tag, ""));
                    assert!(!without_tags.contains('<'), "raw `<` outside code: {outside:?}; {case}");
                    assert!(!outside.replace("\\{", "").contains('{'), "unescaped brace: {outside:?}; {case}");
                    assert!(!outside.contains("](http://evil"), "link injected: {outside:?}; {case}");
                    assert!(!outside.contains("**bold**") && !outside.contains("~~s~~"), "emphasis: {outside:?}; {case}");
                    assert!(!outside.contains("&lt;b") || outside.contains("&amp;lt;b"), "entity kept: {outside:?}; {case}");
                    assert!(!outside.contains("<!--") && !outside.contains("-->"), "comment: {outside:?}; {case}");
                    assert_eq!(cell_breaks(line), cell_breaks(plain), "table cells changed: {line:?}; {case}");
                    let spans = |s: &str| strip_code_spans(s).matches("CODE").count();
                    assert_eq!(spans(plain), spans(line), "code spans changed: {line:?}; {case}");
                    // Links point where the template says or nowhere.
                    for (i, _) in outside.match_indices("](") {
                        let dest = &outside[i + 2..];
                        assert!(dest.starts_with("https://") || dest.starts_with('#'), "link to {dest:.40}; {case}");
                    }
                }
            });
        }
    }

    /// GitLab runs a quick action (`/close`, `/merge`, `/approve`, `/label`, ...) that starts a
    /// line of a note or description, with the rights of whoever posted it: the bot. No line the
    /// default templates write starts with `/`, whatever the untrusted values in it (tags,
    /// aliases, logins, branches...). The bot's name is the operator's (`identity.name`) and is
    /// kept as configured.
    #[test]
    fn no_line_the_bot_writes_starts_with_a_quick_action() {
        let t = Templates::defaults();
        for payload in ["/close", "/merge", "/label ~deploy", " /approve", "x\n/unassign", "word"] {
            for name in TemplateName::ALL {
                for example in examples::contexts(name) {
                    let mut hostile = example.clone();
                    if let Value::Object(fields) = &mut hostile {
                        for (key, value) in fields.iter_mut().filter(|(k, _)| k.as_str() != "bot") {
                            if !CONTROL_FIELDS.contains(&key.as_str()) {
                                replace_strings(value, payload);
                            }
                        }
                    }
                    let got = t.render(name, &hostile).unwrap();
                    for line in got.lines() {
                        assert!(!line.trim_start().starts_with('/'), "template {name}, payload {payload:?}: line {line:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn template_syntax_in_values_is_shown_not_run() {
        let t = Templates::defaults();
        let mut pr = examples::pr();
        pr.images.truncate(1);
        pr.images[0].to.tag = Some("{{ bot.name }}".into());
        pr.app.name = "{% for i in images %}x{% endfor %}".into();
        assert_eq!(t.pr_title(&pr).unwrap(), "chore(deploy): update api to {{ bot.name }} in {% for i in images %}x{% endfor %}");
        let body = t.pr_body(&pr).unwrap();
        assert!(body.contains("`{{ bot.name }}`"), "{body}");
        assert!(body.contains("`{% for i in images %}x{% endfor %}`"), "{body}");
        let commit = t.commit_message(&pr).unwrap();
        assert!(commit.contains("-> {{ bot.name }}@sha256:222222222222 (minor)"), "{commit}");
    }

    #[test]
    fn markdown_escaping() {
        let cases = [
            ("1.2.3", r"1\.2\.3"),
            ("a|b", r"a\|b"),
            ("<script>", "&lt;script&gt;"),
            ("[x](y)", r"\[x\]\(y\)"),
            ("\\", r"\\"),
            ("line\nbreak\r\tx", "line break  x"),
            ("bell\u{7}\u{202e}", "bell"),
            ("'\"&", "&#39;&quot;&amp;"),
            ("{{ x }}", r"\{\{ x \}\}"),
            ("<!-- -->", r"&lt;\!\-\- \-\-&gt;"),
            ("ünïcödé 日本", "ünïcödé 日本"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_markdown(input), want, "case {input:?}");
        }
        assert_eq!(escape_text("a\nb\u{1b}[0m\tc"), "a b[0m c");
    }

    #[test]
    fn code_spans_cannot_be_closed_from_inside() {
        let cases = [
            ("1.2.3", "`1.2.3`"),
            ("", ""),
            ("a`b", "``a`b``"),
            ("``x` ```", "```` ``x` ``` ````"),
            ("`x", "`` `x ``"),
            ("a|b", r"`a\|b`"),
            ("two\nlines", "`two lines`"),
            (" both ", "`  both  `"),
            ("<b>", "`<b>`"),
        ];
        for (input, want) in cases {
            assert_eq!(code_span(input), want, "case {input:?}");
            if !input.is_empty() {
                assert_eq!(strip_code_spans(&code_span(input)), "CODE", "case {input:?} must be one span");
            }
        }
    }

    #[test]
    fn urls_for_links() {
        let cases = [
            ("https://hub.docker.com/_/nginx", "https://hub.docker.com/_/nginx"),
            ("https://x.io/a(b)c", "https://x.io/a%28b%29c"),
            ("https://x.io/?a=1&b='2'", "https://x.io/?a=1&amp;b=%272%27"),
            ("javascript:alert(1)", "#"),
            ("data:text/html,<b>", "#"),
            ("[click](http://evil)", "#"),
            ("https://x.io/a b<c>", "https://x.io/a%20b%3Cc%3E"),
        ];
        for (input, want) in cases {
            assert_eq!(safe_url(input), want, "case {input:?}");
        }
    }

    #[test]
    fn registry_links() {
        let cases = [
            ("nginx", "https://hub.docker.com/_/nginx"),
            ("bitnami/redis", "https://hub.docker.com/r/bitnami/redis"),
            ("ghcr.io/acme/shop-api", "https://ghcr.io/acme/shop-api"),
            ("quay.io/prometheus/node-exporter", "https://quay.io/repository/prometheus/node-exporter"),
            ("public.ecr.aws/nginx/nginx", "https://gallery.ecr.aws/nginx/nginx"),
            ("asia.gcr.io/some-project/some-image", "https://asia.gcr.io/some-project/some-image"),
            ("localhost:5000/app", "http://localhost:5000/app"),
            ("127.0.0.1:5000/team/app", "http://127.0.0.1:5000/team/app"),
        ];
        for (input, want) in cases {
            assert_eq!(registry_url(&ImageName::parse(input).unwrap()), want, "case {input}");
        }
    }

    #[test]
    fn versions_for_people() {
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let v = |t: Option<&str>, d: Option<&str>| serde_json::to_value(Version::new(t, d)).unwrap();
        assert_eq!(version_text(&v(Some("1.2"), Some(d)), true), "1.2@sha256:0123456789ab");
        assert_eq!(version_text(&v(Some("1.2"), Some(d)), false), "1.2");
        assert_eq!(version_text(&v(None, Some(d)), false), "sha256:0123456789ab");
        assert_eq!(version_text(&v(None, None), true), "none");
        assert_eq!(short_digest("abcdef0123456789"), "abcdef012345");
    }

    #[test]
    fn templates_see_both_version_fields_and_an_override_may_print_an_absent_digest() {
        let name = ImageName::parse("ghcr.io/acme/api").unwrap();
        let change = ImageChange::new("api", &name, Version::tag("1.2.0"), Version::tag("1.3.0"), Change::Minor);
        let context = serde_json::to_value(&change).unwrap();
        assert_eq!(context["to"], json!({"tag": "1.3.0", "digest": null}), "null, not absent: {context}");
        // The stored form (the PR metadata block) stays compact.
        assert_eq!(serde_json::to_value(Version::tag("1.3.0")).unwrap(), json!({"tag": "1.3.0"}));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("commit-message.txt.tera"), "{% for i in images %}{{ i.alias }} {{ i.to.digest }}{% endfor %}\n").unwrap();
        let t = Templates::from_dir(dir.path()).unwrap();
        let mut pr = examples::pr();
        pr.images.truncate(1);
        pr.images[0].to.digest = None;
        assert_eq!(t.commit_message(&pr).unwrap(), "api\n", "null prints as nothing; no error");
    }

    #[test]
    fn render_errors_name_the_template() {
        let err = Templates::defaults().render(TemplateName::PrBody, &json!({"app": {}})).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("template pr-body.md.tera: "), "{text}");
        assert!(matches!(err, TemplateError::Render { template: TemplateName::PrBody, .. }));
    }

    #[test]
    fn get_env_is_disabled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("help.md.tera"), "{{ get_env(name=\"HOME\") }}").unwrap();
        let err = Templates::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("help.md.tera") && err.contains("get_env is disabled"), "{err}");
    }

    #[test]
    fn an_override_replaces_the_default_and_is_escaped_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pr-body.md.tera"), "Deploy {{ app.name }}: {{ images | length }} images.\n").unwrap();
        // What a mounted ConfigMap and an editor leave behind is not a template.
        std::fs::create_dir(dir.path().join("..2024_01_01")).unwrap();
        std::fs::write(dir.path().join(".gitkeep"), "").unwrap();
        let t = Templates::from_dir(dir.path()).unwrap();
        let mut pr = examples::pr();
        assert_eq!(t.pr_body(&pr).unwrap(), "Deploy shop\\-prod: 2 images.\n");
        pr.app.name = "<b>x</b>".into();
        assert_eq!(t.pr_body(&pr).unwrap(), "Deploy &lt;b&gt;x&lt;/b&gt;: 2 images.\n");
        // The others stay the defaults.
        assert_eq!(t.pr_title(&examples::pr()).unwrap(), Templates::defaults().pr_title(&examples::pr()).unwrap());
    }

    #[test]
    fn an_unknown_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pr-bdy.md.tera"), "x").unwrap();
        let err = Templates::from_dir(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TemplateError::UnknownFile { .. }), "{text}");
        assert!(text.contains("pr-bdy.md.tera: not a template") && text.contains("pr-body.md.tera"), "{text}");
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("closed-ignored.md.tera");
        std::fs::write(&file, "Closed.\n\n{% for i in images %}\n- {{ i.alias | }}\n{% endfor %}\n").unwrap();
        let err = Templates::from_dir(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TemplateError::Syntax { line: Some(4), .. }), "{text}");
        assert!(text.starts_with(&format!("{}:4: syntax error", file.display())), "{text}");
    }

    #[test]
    fn an_unknown_variable_fails_at_load_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pr-title.txt.tera"), "Update {{ application.name }}").unwrap();
        let err = Templates::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pr-title.txt.tera: fails to render an example") && err.contains("application.name"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let err = Templates::from_dir(Path::new("/nonexistent/templates")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/templates"), "{err}");
    }

    /// The override examples in docs/templates.md load and render.
    #[test]
    fn the_documented_examples_work() {
        let doc = include_str!("../docs/templates.md");
        let dir = tempfile::tempdir().unwrap();
        let mut found = 0;
        for block in doc.split("```jinja\n").skip(1) {
            let block = &block[..block.find("```").unwrap()];
            let file = block.lines().next().unwrap().trim_start_matches("{# ").trim_end_matches(" #}");
            let name = Path::new(file).file_name().unwrap();
            std::fs::write(dir.path().join(name), block).unwrap();
            found += 1;
        }
        assert_eq!(found, 2);
        let t = Templates::from_dir(dir.path()).unwrap();
        let pr = examples::pr();
        assert_eq!(t.pr_title(&pr).unwrap(), "deploy(argocd/shop-prod): api 1.3.0, web stable");
        assert!(t.pr_body(&pr).unwrap().starts_with("Deploys to `shop` on merge.\n\n- `api`: `1.2.0` → `1.3.0`, built 2024\\-05"));
    }

    #[test]
    fn a_fake_block_in_a_rendered_value_does_not_beat_the_real_one() {
        let t = Templates::defaults();
        let mut pr = examples::pr();
        pr.images[0].to.tag = Some("<!-- argocd-image-pr:metadata {\"v\": 666} -->".into());
        let body = format!("{}\n{}", t.pr_body(&pr).unwrap(), crate::metadata::encode(&json!({"v": 1})).unwrap());
        assert_eq!(crate::metadata::decode::<Value>(&body), Some(json!({"v": 1})));
    }

    const SNAPSHOTS: &[(&str, &str)] = &[
        ("pr-title", r#"chore(deploy): update 2 images in shop-prod"#),
        ("pr-title, one image", r#"chore(deploy): update api to 1.3.0 in shop-prod"#),
        ("pr-body", r#"### Deploy review: `shop-prod`

Merging this pull request deploys new image versions to the Argo CD Application `argocd/shop-prod` (project `shop`).

- **Destination:** cluster `https://kubernetes.default.svc`, namespace `shop`
- **Base branch:** `main` of `acme/gitops`, from `argocd-image-pr/argocd/shop-prod`

| Image | Version | Change | Built | Digest | Registry |
| --- | --- | --- | --- | --- | --- |
| `api` | `1.2.0` → `1.3.0` | minor | 2024\-05\-02T09:30:00Z | `sha256:222222222222` | [ghcr\.io/acme/shop\-api](https://ghcr.io/acme/shop-api) |
| `web` | `stable@sha256:333333333333` → `stable@sha256:444444444444` | digest | unknown | `sha256:444444444444` | [docker\.io/library/nginx](https://hub.docker.com/_/nginx) |

#### Running now

Argo CD reports `argocd/shop-prod` `Synced` and `Healthy`, synced to revision `8d3c9b1f2e4a`.

| Image | Running now | In git | Proposed |
| --- | --- | --- | --- |
| `api` | `1.1.9` (**not what git has**) | `1.2.0` | `1.3.0` |
| `web` | `stable` | `stable@sha256:333333333333` | `stable@sha256:444444444444` |

<details><summary>Files changed: 2</summary>

- `apps/shop/prod/kustomization.yaml`
- `apps/shop/prod/values.yaml`

</details>

#### Roll back

After merging, revert this pull request (the **Revert** button, or any commit that puts the older versions back). argocd\-image\-pr notices the rollback and proposes only versions newer than the ones reverted.

#### Hold

Comment on this pull request (write access to the repository is needed):

| Command | What it does |
| --- | --- |
| `/pin` | Hold every image at the version git has now and close this pull request\. |
| `/pin <alias>` | Hold one image at the version git has now\. |
| `/pin <alias> <version>` | Hold one image at exactly that version; this pull request proposes it if git has another\. |
| `/unpin [<alias>]` | Release the hold on one image, or on all of them\. |
| `/ignore <version>` | Skip one version; newer versions are still proposed\. |
| `/recreate` | Regenerate the branch from the base, dropping commits by others\. |
| `/help` | List these commands\. |
"#),
        ("commit-message", r#"chore(deploy): update 2 images in shop-prod

Argo CD Application argocd/shop-prod (project shop):

- api (ghcr.io/acme/shop-api): 1.2.0@sha256:111111111111 -> 1.3.0@sha256:222222222222 (minor)
- web (docker.io/library/nginx): stable@sha256:333333333333 -> stable@sha256:444444444444 (digest)
"#),
        ("commit-message, one image", r#"chore(deploy): update api to 1.3.0 in shop-prod

Argo CD Application argocd/shop-prod (project shop):

- api (ghcr.io/acme/shop-api): 1.2.0@sha256:111111111111 -> 1.3.0@sha256:222222222222 (minor)
"#),
        ("closed-obsolete.md.tera #0", r#"Closing: `main` already has the versions this pull request proposed:

- `api` at `1.3.0`
- `web` at `stable@sha256:444444444444`

Nothing is left to deploy, so argocd\-image\-pr deletes the branch `argocd-image-pr/argocd/shop-prod`.
"#),
        ("closed-obsolete.md.tera #1", r#"Closing: the Argo CD Application `argocd/shop-prod` no longer has the annotations that ask argocd\-image\-pr to update its images, so this pull request is obsolete. argocd\-image\-pr deletes the branch `argocd-image-pr/argocd/shop-prod`.
"#),
        ("closed-obsolete.md.tera #2", r#"Closing: the Argo CD Application `argocd/shop-prod` is gone from `main`, so this pull request is obsolete. argocd\-image\-pr deletes the branch `argocd-image-pr/argocd/shop-prod`.
"#),
        ("closed-ignored.md.tera #3", r#"This pull request was closed without merging, so argocd\-image\-pr ignores the versions it proposed:

- `api` at `1.3.0`
- `web` at `stable@sha256:444444444444`

A newer version of any of these images brings a pull request back. To undo, reopen this pull request.
"#),
        ("foreign-commit.md.tera #4", r#"Someone else pushed to `argocd-image-pr/argocd/shop-prod`: commit `9fceb02` by bob was not made by argocd\-image\-pr.

From now on argocd\-image\-pr leaves this branch and this pull request alone: no pushes, no new title or description, no closing.

To hand it back, comment `/recreate`: argocd\-image\-pr regenerates the branch from `main` and drops the other commits.
"#),
        ("rollback-noticed.md.tera #5", r#"argocd\-image\-pr noticed a rollback: after this pull request was merged, `main` went back to older versions.

| Image | Rolled back | Now in git | Waiting for |
| --- | --- | --- | --- |
| `api` | `1.3.0` | `1.2.0` | a version newer than `1.3.0` |

argocd\-image\-pr will not propose that version again, nor anything older; it opens a pull request when a newer version appears.
"#),
        ("command-ack.md.tera #6", r#"@alice done: every image of `shop-prod` is held at what git has now.

- `api`: `1.2.0`
- `web`: `stable`


This pull request is closed and stays closed until `/unpin`.
"#),
        ("command-ack.md.tera #7", r#"@alice done: `api` is held at what git has now.

- `api`: `1.2.0`


This pull request is updated accordingly.
"#),
        ("command-ack.md.tera #8", r#"@alice done: `api` is held at `1.2.5`.

- `api`: `1.2.5`


This pull request is updated accordingly.
"#),
        ("command-ack.md.tera #9", r#"@alice done: `api` is no longer held.
"#),
        ("command-ack.md.tera #10", r#"@alice done: no image of `shop-prod` is held any more.

This pull request is open again.
"#),
        ("command-ack.md.tera #11", r#"@alice done: `1.3.0` is skipped; newer versions are still proposed.

- `api`: `1.3.0`


This pull request is updated accordingly.
"#),
        ("command-ack.md.tera #12", r#"@alice done: the branch is regenerated from `main`; commits by others are dropped.

This pull request is updated accordingly.
"#),
        ("command-error.md.tera #13", r#"@alice I could not run `/pin api 1.2.0 now`: too many arguments.

Usage: `/pin [<alias> [<version>]]`

Comment `/help` for every command.
"#),
        ("command-refused.md.tera #14", r#"@mallory thank you, but `/pin` needs write access to this repository, and you don't have it, so nothing changed. Someone with write access can run it for you.
"#),
        ("help.md.tera #15", r#"argocd\-image\-pr understands these commands in a comment on its pull requests (write access to the repository is needed):

| Command | What it does |
| --- | --- |
| `/pin` | Hold every image at the version git has now and close this pull request\. |
| `/pin <alias>` | Hold one image at the version git has now\. |
| `/pin <alias> <version>` | Hold one image at exactly that version; this pull request proposes it if git has another\. |
| `/unpin [<alias>]` | Release the hold on one image, or on all of them\. |
| `/ignore <version>` | Skip one version; newer versions are still proposed\. |
| `/recreate` | Regenerate the branch from the base, dropping commits by others\. |
| `/help` | List these commands\. |

A command starts its own line; commands inside quotes or code blocks are ignored.
"#),
    ];
}
