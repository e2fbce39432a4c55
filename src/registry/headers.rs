//! The `WWW-Authenticate` parser (RFC 7235 challenges) the registry's token auth relies on. Pure,
//! so the odd spellings registries send can be pinned by unit tests. `Link` and `Retry-After`,
//! which the forges read too, are in [`crate::http`].

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
}
