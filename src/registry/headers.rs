//! Parsers for the HTTP headers the distribution protocol relies on: `WWW-Authenticate`
//! (RFC 7235 challenges), `Link` (RFC 8288, tag-list pagination) and `Retry-After` (RFC 9110).
//! Pure functions, so the odd spellings registries send can be pinned by unit tests.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Auth scheme, lowercased: `basic`, `bearer`, ...
    pub scheme: String,
    /// Parameters with lowercased names, values unquoted and unescaped, in header order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge of a `WWW-Authenticate` value. Quoted values may hold commas,
/// `=` and escaped quotes; a new challenge starts at a token that is not followed by `=`.
pub(crate) fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let s: Vec<char> = value.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip = |i: &mut usize, set: &[char]| {
        while *i < s.len() && (s[*i].is_whitespace() || set.contains(&s[*i])) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && !s[*i].is_whitespace() && !matches!(s[*i], ',' | '=' | '"') {
            *i += 1;
        }
        s[start..*i].iter().collect::<String>()
    };
    loop {
        skip(&mut i, &[',']);
        if i >= s.len() {
            break;
        }
        let scheme = token(&mut i).to_ascii_lowercase();
        if scheme.is_empty() {
            // Stray character (`=` or `"`) where a scheme should be: skip it.
            i += 1;
            continue;
        }
        let mut params = Vec::new();
        loop {
            skip(&mut i, &[',']);
            if i >= s.len() {
                break;
            }
            let name_start = i;
            let name = token(&mut i).to_ascii_lowercase();
            skip(&mut i, &[]);
            if name.is_empty() || i >= s.len() || s[i] != '=' {
                // Not `name=value`: the next challenge starts here.
                i = name_start;
                if name.is_empty() {
                    i += 1;
                }
                break;
            }
            i += 1;
            skip(&mut i, &[]);
            let value = if i < s.len() && s[i] == '"' {
                i += 1;
                let mut v = String::new();
                while i < s.len() && s[i] != '"' {
                    if s[i] == '\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i]);
                    i += 1;
                }
                i += 1; // closing quote
                v
            } else {
                let start = i;
                while i < s.len() && s[i] != ',' && !s[i].is_whitespace() {
                    i += 1;
                }
                s[start..i].iter().collect()
            };
            params.push((name, value));
        }
        out.push(Challenge { scheme, params });
    }
    out
}

/// The target of the `rel="next"` link of a `Link` header value, as written (maybe relative).
pub(crate) fn parse_link_next(value: &str) -> Option<String> {
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
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn www_authenticate_bearer_as_registries_send_it() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                "docker hub",
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/nginx:pull"),
                ],
            ),
            (
                "comma inside quoted scope, spaces around separators",
                r#"bearer realm = "https://r.example/token" , scope="repository:a:pull,push", service=reg"#,
                &[
                    ("realm", "https://r.example/token"),
                    ("scope", "repository:a:pull,push"),
                    ("service", "reg"),
                ],
            ),
            (
                "escaped quote",
                r#"Bearer realm="https://x/t",error="a \"quoted\" word""#,
                &[("realm", "https://x/t"), ("error", r#"a "quoted" word"#)],
            ),
        ];
        for (name, header, want) in cases {
            let got = parse_www_authenticate(header);
            assert_eq!(got.len(), 1, "case {name}: {got:?}");
            assert_eq!(got[0].scheme, "bearer", "case {name}");
            assert_eq!(params(&got[0]), *want, "case {name}");
        }
    }

    #[test]
    fn www_authenticate_several_challenges() {
        let got = parse_www_authenticate(
            r#"Basic realm="Registry Realm, with comma", Bearer realm="https://t/x",service="s""#,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].scheme, "basic");
        assert_eq!(got[0].param("realm"), Some("Registry Realm, with comma"));
        assert_eq!(got[1].scheme, "bearer");
        assert_eq!(got[1].param("realm"), Some("https://t/x"));
        assert_eq!(got[1].param("service"), Some("s"));

        let bare = parse_www_authenticate("Basic");
        assert_eq!(bare, vec![Challenge { scheme: "basic".into(), params: vec![] }]);
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate("  ,  ").is_empty());
        // Unterminated quote must not panic.
        let broken = parse_www_authenticate(r#"Bearer realm="https://x"#);
        assert_eq!(broken[0].param("realm"), Some("https://x"));
    }

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
            assert_eq!(parse_link_next(header).as_deref(), want, "case {header:?}");
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
            assert_eq!(parse_retry_after(header, now), want, "case {header:?}");
        }
    }
}
