//! Comment commands on the bot's pull requests: the text of a comment becomes typed [`Command`]s
//! or typed, user-facing [`CommandError`]s. Pure: who may run a command, and what it does, is the
//! engine's business.
//!
//! What counts as a command (docs/commands.md says the same for users):
//! - A line of ordinary text that starts with `/` and a command word, after optional indentation.
//!   Quotes, code blocks, inline code and HTML comments are stripped first (see `markdown`).
//! - Command words are lowercase and exact: `pin`, `unpin`, `ignore`, `recreate`, `help`.
//! - Arguments are the rest of the line, separated by whitespace; an argument wrapped in one pair
//!   of backticks is unwrapped. Anything more than the command takes is an error, never ignored:
//!   `/pin api because 1.3 is broken` is refused rather than half understood.
//! - A `/word` that is not ours is an error only when it looks like a typo of ours: it is made of
//!   ASCII letters and is one edit (insert, delete, substitute, swap two neighbours) away from a
//!   command word, or two edits when it has five letters or more, or it is a command word in other
//!   case (`/Pin`). Anything else (`/cc @team`, `/usr/bin/env`, `/hold`, `/lgtm`) is left alone:
//!   other bots and people use slashes too.

mod markdown;
#[cfg(test)]
mod tests;

use std::fmt;

/// One command from a pull request comment. The engine resolves aliases and versions against the
/// Application the pull request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/pin`, `/pin <alias>`, `/pin <alias> <version>`: hold every image (or one) at what git has
    /// now, or at `version` (the pull request is then updated to exactly that version).
    Pin { alias: Option<String>, version: Option<String> },
    /// `/unpin`, `/unpin <alias>`: lift a pin for every image (or one).
    Unpin { alias: Option<String> },
    /// `/ignore <version>`, `/ignore <alias> <version>`: never propose this version; newer ones
    /// still come. Without an alias it applies to the image(s) of the pull request that the version
    /// is proposed for; the engine asks for an alias when that is ambiguous.
    Ignore { alias: Option<String>, version: String },
    /// `/recreate`: rebuild the pull request's branch from scratch, dropping commits not made by
    /// the bot.
    Recreate,
    /// `/help`: reply with [`format_help`].
    Help,
}

impl Command {
    pub fn name(&self) -> CommandName {
        match self {
            Command::Pin { .. } => CommandName::Pin,
            Command::Unpin { .. } => CommandName::Unpin,
            Command::Ignore { .. } => CommandName::Ignore,
            Command::Recreate => CommandName::Recreate,
            Command::Help => CommandName::Help,
        }
    }
}

/// The command words, without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandName {
    Pin,
    Unpin,
    Ignore,
    Recreate,
    Help,
}

impl CommandName {
    /// Every command, in the order help lists them. The parser only knows the words listed here.
    pub const ALL: [CommandName; 5] =
        [CommandName::Pin, CommandName::Unpin, CommandName::Ignore, CommandName::Recreate, CommandName::Help];

    /// The word after the `/`.
    pub fn word(self) -> &'static str {
        match self {
            CommandName::Pin => "pin",
            CommandName::Unpin => "unpin",
            CommandName::Ignore => "ignore",
            CommandName::Recreate => "recreate",
            CommandName::Help => "help",
        }
    }

    /// One line of usage, as shown with an error.
    pub fn usage(self) -> &'static str {
        match self {
            CommandName::Pin => "/pin [<alias> [<version>]]",
            CommandName::Unpin => "/unpin [<alias>]",
            CommandName::Ignore => "/ignore [<alias>] <version>",
            CommandName::Recreate => "/recreate",
            CommandName::Help => "/help",
        }
    }

    fn from_word(word: &str) -> Option<CommandName> {
        CommandName::ALL.into_iter().find(|name| name.word() == word)
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.word())
    }
}

/// A command line that is ours but cannot be obeyed. Shown to the commenter, so every message says
/// what was wrong; [`CommandError::usage`] says what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `/word` close to a command word but not one (`/pinn`, `/Pin`).
    Unknown { word: String, did_you_mean: CommandName },
    /// More arguments than the command takes; `extra` are the ones beyond.
    TooManyArgs { command: CommandName, extra: Vec<String> },
    /// A required argument is missing.
    MissingArg { command: CommandName, arg: &'static str },
    /// Not an OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`) nor `sha256:<64 hex digits>`.
    InvalidVersion { command: CommandName, version: String },
    /// Not an image alias: letters, digits, `.`, `_`, `-` and `/`, starting with a letter, digit or
    /// `_`, at most 128 characters, no `..`, `//` or trailing `/`.
    InvalidAlias { command: CommandName, alias: String },
}

impl CommandError {
    /// The command the error is about (for `Unknown`, the one suggested).
    pub fn command(&self) -> CommandName {
        match self {
            CommandError::Unknown { did_you_mean, .. } => *did_you_mean,
            CommandError::TooManyArgs { command, .. }
            | CommandError::MissingArg { command, .. }
            | CommandError::InvalidVersion { command, .. }
            | CommandError::InvalidAlias { command, .. } => *command,
        }
    }

    /// Usage of the command the error is about.
    pub fn usage(&self) -> &'static str {
        self.command().usage()
    }
}

impl fmt::Display for CommandError {
    /// Markdown for a reply comment; user text is shown in code spans that it cannot break out of.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown { word, did_you_mean } => {
                write!(f, "{} is not a command; did you mean `{did_you_mean}`?", code(&format!("/{word}")))
            }
            CommandError::TooManyArgs { command, extra } => {
                write!(f, "`{command}` takes no more than this; unexpected {}", code(&extra.join(" ")))
            }
            CommandError::MissingArg { command, arg } => write!(f, "`{command}` needs <{arg}>"),
            CommandError::InvalidVersion { command, version } => write!(
                f,
                "`{command}`: {} is not a version: a version is an image tag (letters, digits, `_`, `.`, `-`, \
                 at most 128, not starting with `.` or `-`) or a digest `sha256:` followed by 64 lowercase hex digits",
                code(version)
            ),
            CommandError::InvalidAlias { command, alias } => write!(
                f,
                "`{command}`: {} is not an image alias: an alias is made of letters, digits, `.`, `_`, `-` and `/`, \
                 as in the Application's `image-list` annotation",
                code(alias)
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// Every command in `body`, in order of appearance; lines that are not commands are skipped.
///
/// A line repeated (the same command, or the same mistake) counts once, so `/help` is answered
/// once however often it is written; at most [`MAX_COMMANDS_PER_COMMENT`] are taken, so one
/// comment cannot make the bot write a reply longer than a forge takes.
pub fn parse_comment(body: &str) -> Vec<Result<Command, CommandError>> {
    let mut out: Vec<Result<Command, CommandError>> = Vec::new();
    for parsed in markdown::visible_lines(body).iter().flatten().filter_map(|line| parse_line(line)) {
        if out.len() == MAX_COMMANDS_PER_COMMENT {
            break;
        }
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    out
}

/// Commands carried out from one comment; further lines are ignored (docs/commands.md).
pub const MAX_COMMANDS_PER_COMMENT: usize = 10;

/// Every form of every command as `(usage, summary)`, in help order: the one list the `/help`
/// reply and the pull request body's command table are built from.
pub fn help_list() -> Vec<(&'static str, &'static str)> {
    CommandName::ALL.into_iter().flat_map(|name| help_entries(name).iter().copied()).collect()
}

/// The reply to `/help`, in Markdown.
pub fn format_help() -> String {
    let mut help = String::from(
        "Commands for this pull request, each on a line of its own, from people with write access to the repository:\n\n",
    );
    for (form, text) in help_list() {
        help.push_str(&format!("- `{form}`: {text}\n"));
    }
    help.push_str(
        "\n`<alias>` is an image's alias in the Application's `argocd-image-updater.argoproj.io/image-list` \
         annotation; `<version>` is a tag or a `sha256:` digest. Commands in quotes, code or HTML comments are ignored.\n",
    );
    help
}

/// The help text of every form of a command. The match is exhaustive, and a new [`Command`]
/// variant needs a [`CommandName`] (see [`Command::name`]), so a new command does not compile
/// until its help exists.
fn help_entries(name: CommandName) -> &'static [(&'static str, &'static str)] {
    match name {
        CommandName::Pin => &[
            (
                "/pin",
                "hold every image of this Application at the version git has now; the pull request is closed and stays closed",
            ),
            ("/pin <alias>", "hold one image at the version git has now"),
            (
                "/pin <alias> <version>",
                "hold one image at `<version>`; the pull request is updated to exactly that version if git has another",
            ),
        ],
        CommandName::Unpin => &[
            ("/unpin", "lift every pin on this Application's images"),
            ("/unpin <alias>", "lift the pin on one image"),
        ],
        CommandName::Ignore => &[
            ("/ignore <version>", "never propose `<version>`; newer versions are still proposed"),
            ("/ignore <alias> <version>", "the same for one image, when several could have that version"),
        ],
        CommandName::Recreate => {
            &[("/recreate", "rebuild this pull request's branch from scratch, dropping commits the bot did not make")]
        }
        CommandName::Help => &[("/help", "show this help")],
    }
}

/// `Some` when the line is ours (a command or a near miss), `None` when it is not.
fn parse_line(line: &str) -> Option<Result<Command, CommandError>> {
    let rest = line.trim().strip_prefix('/')?;
    if rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut parts = rest.split_whitespace();
    let word = parts.next()?;
    let args: Vec<&str> = parts.map(unwrap_backticks).collect();
    match CommandName::from_word(word) {
        Some(name) => Some(parse_args(name, &args)),
        None => near_miss(word).map(|did_you_mean| Err(CommandError::Unknown { word: word.to_string(), did_you_mean })),
    }
}

fn unwrap_backticks(arg: &str) -> &str {
    match arg.strip_prefix('`').and_then(|a| a.strip_suffix('`')) {
        Some(inner) if !inner.is_empty() && !inner.contains('`') => inner,
        _ => arg,
    }
}

fn parse_args(name: CommandName, args: &[&str]) -> Result<Command, CommandError> {
    let max = match name {
        CommandName::Pin | CommandName::Ignore => 2,
        CommandName::Unpin => 1,
        CommandName::Recreate | CommandName::Help => 0,
    };
    if args.len() > max {
        let extra = args[max..].iter().map(|a| a.to_string()).collect();
        return Err(CommandError::TooManyArgs { command: name, extra });
    }
    let alias = |a: &str| {
        valid_alias(a)
            .then(|| a.to_string())
            .ok_or_else(|| CommandError::InvalidAlias { command: name, alias: a.to_string() })
    };
    let version = |v: &str| {
        valid_version(v)
            .then(|| v.to_string())
            .ok_or_else(|| CommandError::InvalidVersion { command: name, version: v.to_string() })
    };
    Ok(match (name, args) {
        (CommandName::Pin, []) => Command::Pin { alias: None, version: None },
        (CommandName::Pin, [a]) => Command::Pin { alias: Some(alias(a)?), version: None },
        (CommandName::Pin, [a, v]) => Command::Pin { alias: Some(alias(a)?), version: Some(version(v)?) },
        (CommandName::Unpin, []) => Command::Unpin { alias: None },
        (CommandName::Unpin, [a]) => Command::Unpin { alias: Some(alias(a)?) },
        (CommandName::Ignore, []) => return Err(CommandError::MissingArg { command: name, arg: "version" }),
        (CommandName::Ignore, [v]) => Command::Ignore { alias: None, version: version(v)? },
        (CommandName::Ignore, [a, v]) => Command::Ignore { alias: Some(alias(a)?), version: version(v)? },
        (CommandName::Recreate, []) => Command::Recreate,
        (CommandName::Help, []) => Command::Help,
        _ => unreachable!("argument counts were checked against the maximum above"),
    })
}

/// An OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`) or `sha256:<64 lowercase hex>`.
pub(crate) fn valid_version(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix("sha256:") {
        return hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    }
    let mut bytes = v.bytes();
    let Some(first) = bytes.next() else { return false };
    v.len() <= 128
        && (first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// An image alias as the `image-list` annotation spells one: explicit aliases (`api=...`) and the
/// default ones, which are image paths without registry host (`bitnami/redis`).
pub(crate) fn valid_alias(a: &str) -> bool {
    let mut bytes = a.bytes();
    let Some(first) = bytes.next() else { return false };
    a.len() <= 128
        && (first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && !a.contains("..")
        && !a.contains("//")
        && !a.ends_with('/')
}

/// The command a `/word` that is not one was probably meant to be (rule in the module doc).
fn near_miss(word: &str) -> Option<CommandName> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    let budget = if lower.len() >= 5 { 2 } else { 1 };
    CommandName::ALL
        .into_iter()
        .map(|name| (edit_distance(&lower, name.word()), name))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbours each cost one. ASCII only (callers check).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// `text` as an inline code span it cannot escape (fence longer than any backtick run inside),
/// shortened to 64 characters: user input echoed into a reply stays inert.
fn code(text: &str) -> String {
    let mut shown: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    if text.chars().count() > 64 {
        shown.push('…');
    }
    let longest_run = shown.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run + 1);
    let pad = if shown.starts_with('`') || shown.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{shown}{pad}{fence}")
}
