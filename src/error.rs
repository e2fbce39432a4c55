//! The errors a run reports, typed to the top. Every failure keeps its [`ErrorKind`]: whether
//! someone has to change something (an annotation, a manifest, a credential) or whether the next
//! cycle may simply succeed (a server that did not answer, a branch that moved meanwhile). The
//! message names the Application, image, file or repository, as the user reads it in the plan,
//! the run's report and the logs; the kind feeds `/metrics`.

use std::fmt;

use crate::annotations::AnnotationError;
use crate::manifest::ManifestError;
use crate::strategy::StrategyError;
use crate::templates::TemplateError;

/// What went wrong, in the terms that decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Something a person wrote cannot be used: an annotation, a manifest, YAML, a template, a
    /// settings file. Fixed by editing it.
    Input,
    /// Credentials are missing, cannot be resolved, or were refused (401/403).
    Auth,
    /// A repository, revision, tag, manifest or pull request that is not there.
    NotFound,
    /// The state moved meanwhile (a branch someone pushed to since the bot looked): the next
    /// cycle looks again.
    Conflict,
    /// The server refused the request as it stands (validation failed, a feature turned off for
    /// the repository): it fails the same way until someone changes a setting.
    Refused,
    /// Rate limited for longer than the bot waits.
    RateLimited,
    /// No answer, a broken connection, a deadline passed.
    Network,
    /// An answer that does not follow the protocol.
    Protocol,
    /// The server lacks the feature.
    Unsupported,
}

impl ErrorKind {
    /// Whether the same cycle, with nothing changed by anyone, may succeed next time.
    pub fn transient(self) -> bool {
        matches!(self, ErrorKind::Conflict | ErrorKind::RateLimited | ErrorKind::Network)
    }

    /// The label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Input => "input",
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Refused => "refused",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Network => "network",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Unsupported => "unsupported",
        }
    }
}

/// One failure as reported: its kind and the message a user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    /// Bad input a person has to fix.
    pub fn input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Input, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error, its message led by where it happened (`Application argocd/api: ...`).
    pub fn context(self, place: impl fmt::Display) -> Error {
        Error { kind: self.kind, message: format!("{place}: {}", self.message) }
    }

    /// Several failures of one thing as one: the first one's kind, the messages joined.
    pub fn joined(errors: Vec<Error>) -> Option<Error> {
        let kind = errors.first()?.kind;
        let message = errors.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ");
        Some(Error { kind, message })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Reports stay readable JSON: an error is its message.
impl serde::Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Error {
        Error::input(e.to_string())
    }
}

impl From<StrategyError> for Error {
    fn from(e: StrategyError) -> Error {
        Error::input(e.to_string())
    }
}

impl From<AnnotationError> for Error {
    fn from(e: AnnotationError) -> Error {
        Error::input(e.to_string())
    }
}

impl From<TemplateError> for Error {
    fn from(e: TemplateError) -> Error {
        Error::input(e.to_string())
    }
}

/// An error with its sources, each once: `error sending request: connection refused`. Client
/// errors (reqwest, kube, hyper) print their kind and keep the cause in the chain.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{ForgeError, ForgeErrorKind, GitError, PushError, RegistryError, RegistryErrorKind};

    #[test]
    fn kinds_follow_the_cause_and_say_whether_waiting_helps() {
        let registry = |kind| RegistryError { registry: "ghcr.io".into(), repository: None, tag: None, kind, message: "x".into() };
        let cases: Vec<(&str, Error, ErrorKind, bool)> = vec![
            ("registry 401", registry(RegistryErrorKind::Unauthorized).into(), ErrorKind::Auth, false),
            ("registry throttled", registry(RegistryErrorKind::RateLimited).into(), ErrorKind::RateLimited, true),
            ("registries.conf", registry(RegistryErrorKind::Config).into(), ErrorKind::Input, false),
            ("git deadline", GitError::Timeout { what: "git repository x".into(), secs: 5 }.into(), ErrorKind::Network, true),
            ("no such branch", GitError::Revision { url: "x".into(), revision: "main".into() }.into(), ErrorKind::NotFound, false),
            (
                "lease",
                PushError::LeaseFailed { branch: "b".into(), expected: None, found: Some("c".into()) }.into(),
                ErrorKind::Conflict,
                true,
            ),
            ("git 403", GitError::Denied { url: "x".into(), message: "fetch failed: unexpected http status code: 403".into() }.into(), ErrorKind::Auth, false),
            (
                "forge 422",
                ForgeError { forge: "github", repo: "o/r".into(), kind: ForgeErrorKind::Conflict, message: "auto-merge is not allowed".into() }.into(),
                ErrorKind::Refused,
                false,
            ),
            ("manifest", ManifestError::Invalid { file: "a.yaml".into(), message: "m".into() }.into(), ErrorKind::Input, false),
        ];
        for (name, error, kind, transient) in cases {
            assert_eq!((error.kind(), error.kind().transient()), (kind, transient), "case {name}");
        }
    }

    #[test]
    fn context_leads_the_message_and_keeps_the_kind_and_json_is_the_message() {
        let e = Error::new(ErrorKind::Network, "git repository x: no result within 5s").context("Application argocd/api");
        assert_eq!(e.to_string(), "Application argocd/api: git repository x: no result within 5s");
        assert_eq!(e.kind(), ErrorKind::Network);
        assert_eq!(serde_json::to_value(&e).unwrap(), serde_json::json!(e.to_string()));
        let both = Error::joined(vec![Error::input("a"), Error::new(ErrorKind::Network, "b")]).unwrap();
        assert_eq!((both.to_string().as_str(), both.kind()), ("a; b", ErrorKind::Input));
        assert_eq!(Error::joined(vec![]), None);
    }
}
