//! The bot's state kept in its pull requests, as stored: the hidden metadata block at the end of
//! a PR body (`<!-- argocd-image-pr:metadata {json} -->`). What the record says is the planner's
//! [`crate::planner::PrMetadata`]; this module only writes it into a body and reads it back.
//! Nothing else is stored anywhere: a restart reads the state from here and from git.

use serde::Serialize;
use serde::de::DeserializeOwned;

const METADATA_OPEN: &str = "<!-- argocd-image-pr:metadata ";
const METADATA_CLOSE: &str = "-->";

/// The hidden, machine-readable block the bot appends to its pull-request bodies:
/// `<!-- argocd-image-pr:metadata {json} -->`. Inside JSON strings `-`, `<` and `>` are written
/// as `\u002d`, `\u003c` and `\u003e`, so no value can end the comment early.
pub fn encode<T: Serialize>(meta: &T) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(meta)?;
    let mut out = String::with_capacity(json.len() + 48);
    out.push_str(METADATA_OPEN);
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            match c {
                _ if escaped => {
                    escaped = false;
                    out.push(c);
                    continue;
                }
                '\\' => escaped = true,
                '"' => in_string = false,
                '-' => {
                    out.push_str("\\u002d");
                    continue;
                }
                '<' => {
                    out.push_str("\\u003c");
                    continue;
                }
                '>' => {
                    out.push_str("\\u003e");
                    continue;
                }
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        // Outside strings only numbers hold `-`, never two in a row and never before `>`.
        out.push(c);
    }
    out.push(' ');
    out.push_str(METADATA_CLOSE);
    Ok(out)
}

/// The metadata of the last block in `body`; `None` when there is none or it does not parse.
pub fn decode<T: DeserializeOwned>(body: &str) -> Option<T> {
    let start = body.rfind(METADATA_OPEN)? + METADATA_OPEN.len();
    let rest = &body[start..];
    let end = rest.find(METADATA_CLOSE)?;
    serde_json::from_str(rest[..end].trim()).ok()
}

/// `body` without its metadata block (what people read and templates rendered).
pub fn visible(body: &str) -> String {
    match body.rfind(METADATA_OPEN) {
        Some(i) => body[..i].trim_end().to_string() + "\n",
        None => body.to_string(),
    }
}

/// The visible body with the block for `meta` after it.
pub fn compose<T: Serialize>(visible: &str, meta: &T) -> String {
    let block = encode(meta).unwrap_or_default();
    format!("{}\n\n{block}\n", visible.trim_end())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meta {
        app: String,
        images: Vec<(String, String)>,
        n: i64,
        f: f64,
    }

    #[test]
    fn metadata_round_trips_hostile_strings() {
        let hostile = ["-->", "--!>", "<!--", "a--b", "->", "\u{2028}", "\"q\"", "\\", "\\-->", "\n-->\n", "<!-- argocd-image-pr:metadata {} -->"];
        for s in hostile {
            let meta = Meta { app: s.into(), images: vec![(s.into(), format!("x{s}y"))], n: -12, f: -1.5e-7 };
            let block = encode(&meta).unwrap();
            let inner = block.strip_prefix(METADATA_OPEN).and_then(|b| b.strip_suffix(" -->")).unwrap();
            assert!(!inner.contains("--") && !inner.contains('>') && !inner.contains('\n'), "case {s:?}: {block}");
            let body = format!("Some body\n\n{block}\n");
            assert_eq!(decode::<Meta>(&body), Some(meta), "case {s:?}");
        }
    }

    #[test]
    fn the_last_metadata_block_wins() {
        let first = encode(&json!({"v": 1})).unwrap();
        let second = encode(&json!({"v": 2})).unwrap();
        let body = format!("{first}\r\ntext\r\n{second}\r\n");
        assert_eq!(decode::<Value>(&body), Some(json!({"v": 2})));
        assert_eq!(decode::<Value>("no block"), None);
        assert_eq!(decode::<Value>(&format!("{second}\n<!-- argocd-image-pr:metadata {{\"v\": -->")), None);
        assert_eq!(decode::<Value>("<!-- argocd-image-pr:metadata {\"v\": 1}"), None);
        assert_eq!(decode::<Meta>(&second), None, "wrong shape");
    }

    #[test]
    fn the_visible_part_and_the_block_compose_and_split() {
        let body = compose("Deploy review\n\n", &json!({"v": 1}));
        assert!(body.starts_with("Deploy review\n\n<!-- argocd-image-pr:metadata "), "{body}");
        assert_eq!(visible(&body), "Deploy review\n");
        assert_eq!(decode::<Value>(&body), Some(json!({"v": 1})));
        assert_eq!(visible("no block\n"), "no block\n");
    }
}
