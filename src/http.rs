//! HTTP plumbing the registry client and the forge drivers share: the `Link` header's next page
//! (RFC 8288), `Retry-After` (RFC 9110), what a status code means to the bot, percent-encoded
//! path segments. Pure: no client, no I/O, so the odd spellings servers send are pinned by unit
//! tests here, once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::ForgeErrorKind;

/// The target of the `rel="next"` link of a `Link` header value, as written (maybe relative).
pub(crate) fn next_link(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let params_end = after[close + 1..].find('<').map(|p| close + 1 + p).unwrap_or(after.len());
        let params = &after[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((name, val)) = p.split_once('=') else { return false };
            name.trim().eq_ignore_ascii_case("rel")
                && val
                    .trim()
                    .trim_matches(|c| c == '"' || c == ',')
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &after[params_end..];
    }
    None
}

/// How long a `Retry-After` value asks to wait: delta-seconds or an HTTP date (past = 0).
pub(crate) fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// What an HTTP status says, in the terms the registry client and the forges act on; each maps
/// it onto its own error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusKind {
    /// 2xx.
    Success,
    /// 401 or 403: the credentials are missing, wrong or not enough.
    Unauthorized,
    /// 404.
    NotFound,
    /// 410: existed once.
    Gone,
    /// 409 or 422: the request conflicts with the current state.
    Conflict,
    /// 429.
    RateLimited,
    /// 5xx.
    ServerError,
    /// Anything else (1xx, 3xx, other 4xx).
    Other,
}

impl StatusKind {
    pub(crate) fn of(status: u16) -> StatusKind {
        match status {
            200..=299 => StatusKind::Success,
            401 | 403 => StatusKind::Unauthorized,
            404 => StatusKind::NotFound,
            410 => StatusKind::Gone,
            409 | 422 => StatusKind::Conflict,
            429 => StatusKind::RateLimited,
            500.. => StatusKind::ServerError,
            _ => StatusKind::Other,
        }
    }
}

/// An error status of a forge's API as a [`ForgeErrorKind`]: a server error is worth retrying
/// like a network failure; an answer the bot did not expect is a protocol error.
impl From<StatusKind> for ForgeErrorKind {
    fn from(kind: StatusKind) -> ForgeErrorKind {
        match kind {
            StatusKind::Unauthorized => ForgeErrorKind::Unauthorized,
            StatusKind::NotFound | StatusKind::Gone => ForgeErrorKind::NotFound,
            StatusKind::Conflict => ForgeErrorKind::Conflict,
            StatusKind::RateLimited => ForgeErrorKind::RateLimited,
            StatusKind::ServerError => ForgeErrorKind::Network,
            StatusKind::Success | StatusKind::Other => ForgeErrorKind::Protocol,
        }
    }
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A slash-separated name (a branch) as path segments: slashes kept, everything else encoded.
pub(crate) fn path_segments(s: &str) -> String {
    s.split('/').map(path_segment).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_next_relative_absolute_and_others() {
        let cases = [
            (r#"</v2/app/tags/list?n=2&last=b>; rel="next""#, Some("/v2/app/tags/list?n=2&last=b")),
            (r#"<https://r.example/v2/app/tags/list?last=b&n=2>; rel=next"#, Some("https://r.example/v2/app/tags/list?last=b&n=2")),
            (r#"</first>; rel="prev", </v2/x?last=a,b>; rel="next""#, Some("/v2/x?last=a,b")),
            (r#"</a>; title="x"; rel="prefetch next""#, Some("/a")),
            (r#"</a>; rel="prev""#, None),
            ("", None),
            ("garbage <unterminated", None),
        ];
        for (header, want) in cases {
            assert_eq!(next_link(header).as_deref(), want, "case {header:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z").unwrap().with_timezone(&Utc);
        let cases = [
            ("1", Some(Duration::from_secs(1))),
            (" 120 ", Some(Duration::from_secs(120))),
            ("Wed, 21 Oct 2015 07:28:30 GMT", Some(Duration::from_secs(30))),
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO)),
            ("-1", None),
            ("soon", None),
        ];
        for (header, want) in cases {
            assert_eq!(retry_after(header, now), want, "case {header:?}");
        }
    }

    #[test]
    fn link_next_as_github_paginates() {
        let link = r#"<https://api.github.com/repositories/1/pulls?page=3>; rel="next", <https://api.github.com/repositories/1/pulls?page=9>; rel="last""#;
        assert_eq!(next_link(link).as_deref(), Some("https://api.github.com/repositories/1/pulls?page=3"));
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
    }

    #[test]
    fn status_kinds_and_what_a_forge_makes_of_them() {
        let cases = [
            (200, StatusKind::Success, ForgeErrorKind::Protocol),
            (204, StatusKind::Success, ForgeErrorKind::Protocol),
            (302, StatusKind::Other, ForgeErrorKind::Protocol),
            (400, StatusKind::Other, ForgeErrorKind::Protocol),
            (401, StatusKind::Unauthorized, ForgeErrorKind::Unauthorized),
            (403, StatusKind::Unauthorized, ForgeErrorKind::Unauthorized),
            (404, StatusKind::NotFound, ForgeErrorKind::NotFound),
            (410, StatusKind::Gone, ForgeErrorKind::NotFound),
            (409, StatusKind::Conflict, ForgeErrorKind::Conflict),
            (422, StatusKind::Conflict, ForgeErrorKind::Conflict),
            (429, StatusKind::RateLimited, ForgeErrorKind::RateLimited),
            (500, StatusKind::ServerError, ForgeErrorKind::Network),
            (503, StatusKind::ServerError, ForgeErrorKind::Network),
        ];
        for (status, kind, forge) in cases {
            assert_eq!(StatusKind::of(status), kind, "case {status}");
            assert_eq!(ForgeErrorKind::from(kind), forge, "case {status}");
        }
    }

    #[test]
    fn path_segments_keep_slashes_and_encode_the_rest() {
        assert_eq!(path_segments("argocd-image-pr/argocd/web app"), "argocd-image-pr/argocd/web%20app");
        assert_eq!(path_segment("o#1"), "o%231");
        assert_eq!(path_segment("a/b"), "a%2Fb");
        assert_eq!(path_segment("ü~._-"), "%C3%BC~._-");
    }
}
