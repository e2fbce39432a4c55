//! Holds as tables: derivation from PRs, filtering of candidates per strategy, commands.

use chrono::TimeZone;

use super::*;
use crate::planner::ImageChange;
use crate::commands::parse_comment;
use crate::planner::commanding::{Change, Context, Reply, apply_change, interpret, replied_to, reply_marker};
use crate::domain::PrState;

const APP: &str = "argocd/api";

fn tag(t: &str) -> Version {
    Version { tag: Some(t.into()), digest: None }
}

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()
}

fn change(alias: &str, from: &str, to: &str) -> ImageChange {
    ImageChange { alias: alias.into(), image: "ghcr.io/acme/api".into(), from: tag(from), to: tag(to), change: "minor".into() }
}

fn view(number: u64, state: PrState, images: Vec<ImageChange>, ledger: Ledger) -> PrView {
    PrView {
        number,
        url: format!("local://r/pulls/{number}"),
        state,
        metadata: PrMetadata {
            version: 1,
            application: APP.into(),
            images,
            fingerprint: String::new(),
            commit: String::new(),
            base_commit: String::new(),
            ledger,
        },
        closed_at: None,
    }
}

fn plain(tags: &[&str]) -> Vec<Candidate> {
    tags.iter().map(|t| Candidate { tag: t.to_string(), digest: None, created: None }).collect()
}

fn current(t: &str) -> Version {
    Version { tag: Some(t.into()), digest: None }
}

fn stored(kind: HoldKind, alias: &str, version: Option<&str>, hour: u32) -> StoredHold {
    StoredHold { kind, alias: alias.into(), version: version.map(tag), by: "alice".into(), at: at(hour), url: format!("u{hour}") }
}

fn kept(o: &Outcome) -> Vec<String> {
    o.candidates.iter().map(|c| c.tag.clone()).collect()
}

#[test]
fn semver_holds_filter_candidates() {
    let merged = |from: &str, to: &str| view(1, PrState::Merged, vec![change("api", from, to)], Ledger::default());
    let closed = |to: &str| view(2, PrState::Closed, vec![change("api", "1.0.0", to)], Ledger::default());
    let all = ["1.2.0", "1.2.5", "1.3.0", "1.3.1"];
    /// (case, PRs, version in git, candidates left, holds in force)
    type Case<'a> = (&'a str, Vec<PrView>, &'a str, Vec<&'a str>, usize);
    let cases: Vec<Case> = vec![
        ("merged, git still has it: nothing held", vec![merged("1.2.0", "1.3.0")], "1.3.0", all.to_vec(), 0),
        ("merged then reverted: 1.3.0 and older held", vec![merged("1.2.0", "1.3.0")], "1.2.0", vec!["1.3.1"], 1),
        ("rolled back further by hand: still held", vec![merged("1.2.0", "1.3.0")], "1.1.0", vec!["1.3.1"], 1),
        ("merged later moved on by a newer merge", vec![merged("1.2.0", "1.3.0")], "1.3.1", all.to_vec(), 0),
        ("closed without merge: that version and older ignored", vec![closed("1.3.0")], "1.2.0", vec!["1.3.1"], 1),
        (
            "closed by the bot itself: ignores nothing",
            vec![view(2, PrState::Closed, vec![change("api", "1.0.0", "1.3.0")], Ledger { closed_by_bot: Some("obsolete".into()), ..Ledger::default() })],
            "1.2.0",
            all.to_vec(),
            0,
        ),
        ("open PR: ignores nothing", vec![view(3, PrState::Open, vec![change("api", "1.2.0", "1.3.0")], Ledger::default())], "1.2.0", all.to_vec(), 0),
        (
            "/ignore 1.3.1 on a PR: only that version",
            vec![view(3, PrState::Open, vec![], Ledger { holds: vec![stored(HoldKind::Ignore, "api", Some("1.3.1"), 1)], ..Ledger::default() })],
            "1.2.0",
            vec!["1.2.0", "1.2.5", "1.3.0"],
            1,
        ),
        (
            "another Application's PR: ignored",
            vec![PrView { metadata: PrMetadata { application: "argocd/web".into(), ..closed("1.3.0").metadata }, ..closed("1.3.0") }],
            "1.2.0",
            all.to_vec(),
            0,
        ),
    ];
    for (name, prs, git, want, active) in cases {
        let holds = derive(APP, &prs, &[]);
        let image = holds.get("api").cloned().unwrap_or_default();
        let o = apply(UpdateStrategy::Semver, &image, &current(git), plain(&all));
        assert_eq!(kept(&o), want, "case {name}");
        assert_eq!(o.active.len(), active, "case {name}: {:?}", o.active);
        assert!(o.pin.is_none(), "case {name}");
    }
}

#[test]
fn rollbacks_are_named_with_their_pr_and_notice() {
    let prs = vec![view(4, PrState::Merged, vec![change("api", "1.2.0", "1.3.0")], Ledger::default())];
    let holds = derive(APP, &prs, &[]);
    let o = apply(UpdateStrategy::Semver, &holds["api"], &current("1.2.0"), plain(&["1.3.0"]));
    assert_eq!(o.rollbacks.len(), 1);
    assert_eq!(o.rollbacks[0].pr, 4);
    assert!(!o.rollbacks[0].noticed);
    assert_eq!(o.rollbacks[0].notice_key("api"), "rollback:api:1.3.0");
    assert_eq!(o.active[0].origin, Origin::Rollback { pr: 4, url: "local://r/pulls/4".into() });

    let noticed = Ledger { notices: vec!["rollback:api:1.3.0".into()], ..Ledger::default() };
    let prs = vec![view(4, PrState::Merged, vec![change("api", "1.2.0", "1.3.0")], noticed)];
    let o = apply(UpdateStrategy::Semver, &derive(APP, &prs, &[])["api"], &current("1.2.0"), plain(&["1.3.0"]));
    assert!(o.rollbacks[0].noticed, "said once");
}

#[test]
fn newest_build_and_digest_holds_use_build_dates_and_digests() {
    let dated = |t: &str, d: &str, h: u32| Candidate { tag: t.into(), digest: Some(d.into()), created: Some(at(h)) };
    let candidates = vec![dated("a", "sha256:a", 1), dated("b", "sha256:b", 2), dated("c", "sha256:c", 3), dated("d", "sha256:d", 4)];
    let delivered = |from: &str, to: &str| ImageChange { change: "build".into(), ..change("api", from, to) };
    let prs = vec![view(1, PrState::Merged, vec![delivered("a", "c")], Ledger::default())];
    let cases = [
        ("newest-build: reverted to a: c and older held", "a", vec!["d"]),
        ("newest-build: git still has c", "c", vec!["a", "b", "c", "d"]),
    ];
    for (name, git, want) in cases {
        let o = apply(UpdateStrategy::NewestBuild, &derive(APP, &prs, &[])["api"], &current(git), candidates.clone());
        assert_eq!(kept(&o), want, "case {name}");
    }
    // digest: the tracked tag `latest`; the merged PR moved it from digest x to y; git went back to x.
    let dv = |d: &str| Version { tag: Some("latest".into()), digest: Some(d.into()) };
    let img = ImageChange { alias: "api".into(), image: "i".into(), from: dv("sha256:x"), to: dv("sha256:y"), change: "digest".into() };
    let prs = vec![view(1, PrState::Merged, vec![img], Ledger::default())];
    let holds = derive(APP, &prs, &[]);
    let latest = |d: &str| vec![Candidate { tag: "latest".into(), digest: Some(d.into()), created: None }];
    let git = Version { tag: Some("latest".into()), digest: Some("sha256:x".into()) };
    let cases = [("digest: the reverted digest is held", "sha256:y", 0usize), ("digest: a new digest is proposed", "sha256:z", 1)];
    for (name, registry, want) in cases {
        let o = apply(UpdateStrategy::Digest, &holds["api"], &git, latest(registry));
        assert_eq!(o.candidates.len(), want, "case {name}");
        assert_eq!(o.rollbacks.len(), 1, "case {name}");
    }
}

#[test]
fn pins_from_the_annotation_win_then_the_newest_comment() {
    let ledger = |holds| Ledger { holds, ..Ledger::default() };
    let prs = vec![
        view(5, PrState::Closed, vec![], ledger(vec![stored(HoldKind::Pin, "api", Some("1.2.0"), 1)])),
        view(6, PrState::Open, vec![], ledger(vec![stored(HoldKind::Pin, "api", Some("1.2.5"), 2)])),
    ];
    /// (case, pins from annotations, version in git, what the pin asks)
    type Case<'a> = (&'a str, Vec<(String, Version)>, &'a str, PinTarget);
    let cases: Vec<Case> = vec![
        ("newest comment pin", vec![], "1.2.0", PinTarget::Exactly(tag("1.2.5"))),
        ("git has the pinned version", vec![], "1.2.5", PinTarget::Stay),
        ("annotation wins", vec![("api".into(), tag("1.2.0"))], "1.2.0", PinTarget::Stay),
    ];
    for (name, annotation, git, want) in cases {
        let holds = derive(APP, &prs, &annotation);
        let o = apply(UpdateStrategy::Semver, &holds["api"], &current(git), plain(&["1.3.0"]));
        let pin = o.pin.expect(name);
        assert_eq!(pin_target(&pin, &current(git), UpdateStrategy::Semver), want, "case {name}");
    }
    let freeze = Hold { kind: HoldKind::Pin, alias: "api".into(), version: None, origin: Origin::Annotation { key: "k".into() } };
    assert_eq!(pin_target(&freeze, &current("1.0.0"), UpdateStrategy::Semver), PinTarget::Stay, "a pin at what git has");
}

#[test]
fn pin_annotation_parses_and_names_bad_entries() {
    assert_eq!(
        parse_pin_annotation("api=1.2.0, web = sha256:abc ,").unwrap(),
        vec![("api".to_string(), tag("1.2.0")), ("web".to_string(), Version { tag: None, digest: Some("sha256:abc".into()) })]
    );
    for bad in ["api", "=1.0", "api=", "api=1 2"] {
        let e = parse_pin_annotation(bad).unwrap_err();
        assert!(e.contains(PIN_ANNOTATION) && e.contains(bad.trim()), "case {bad:?}: {e}");
    }
}

#[test]
fn closed_prs_are_noticed_once() {
    let noticed = Ledger { notices: vec!["closed-ignored".into()], ..Ledger::default() };
    let prs = vec![
        view(1, PrState::Closed, vec![change("api", "1.0.0", "1.1.0")], Ledger::default()),
        view(2, PrState::Closed, vec![change("api", "1.0.0", "1.2.0")], noticed),
        view(3, PrState::Closed, vec![change("api", "1.0.0", "1.3.0")], Ledger { closed_by_bot: Some("held".into()), ..Ledger::default() }),
        view(4, PrState::Merged, vec![change("api", "1.0.0", "1.3.0")], Ledger::default()),
    ];
    assert_eq!(closed_unnoticed(APP, &prs), vec![1]);
}

fn ctx<'a>(can_write: bool, aliases: &'a [String], images: &'a [ImageChange]) -> Context<'a> {
    Context { pr_open: true, author: "alice", can_write, at: at(9), url: "u9", aliases, images }
}

#[test]
fn commands_become_holds_and_replies() {
    let aliases = vec!["api".to_string(), "web".to_string()];
    let images = vec![change("api", "1.2.0", "1.3.0")];
    let hold = |kind, alias: &str, v: Option<&str>| StoredHold { kind, alias: alias.into(), version: v.map(tag), by: "alice".into(), at: at(9), url: "u9".into() };
    let cases: Vec<(&str, &str, bool, Option<Change>, &str)> = vec![
        ("/pin holds every image", "/pin", true, Some(Change::Hold(vec![hold(HoldKind::Pin, "api", None), hold(HoldKind::Pin, "web", None)])), "ack"),
        ("/pin alias", "/pin web", true, Some(Change::Hold(vec![hold(HoldKind::Pin, "web", None)])), "ack"),
        ("/pin alias version", "/pin api 1.2.5", true, Some(Change::Hold(vec![hold(HoldKind::Pin, "api", Some("1.2.5"))])), "ack"),
        ("/pin unknown alias", "/pin db", true, None, "error"),
        ("/unpin", "/unpin", true, Some(Change::Unpin(None)), "ack"),
        ("/unpin alias", "/unpin api", true, Some(Change::Unpin(Some("api".into()))), "ack"),
        ("/ignore the proposed version", "/ignore 1.3.0", true, Some(Change::Hold(vec![hold(HoldKind::Ignore, "api", Some("1.3.0"))])), "ack"),
        ("/ignore ambiguous", "/ignore 9.9.9", true, None, "error"),
        ("/ignore alias version", "/ignore web 2.0", true, Some(Change::Hold(vec![hold(HoldKind::Ignore, "web", Some("2.0"))])), "ack"),
        ("/recreate", "/recreate", true, Some(Change::Recreate), "ack"),
        ("/help", "/help", true, None, "help"),
        ("/help from a reader is still help", "/help", false, None, "help"),
        ("reader: refused", "/pin", false, None, "refused"),
        ("reader's typo: refused too", "/pinn", false, None, "refused"),
        ("malformed: error with usage", "/ignore", true, None, "error"),
        ("typo: error", "/pinn", true, None, "error"),
    ];
    for (name, text, can_write, want_change, want_reply) in cases {
        let parsed = parse_comment(text);
        assert_eq!(parsed.len(), 1, "case {name}");
        let got = interpret(&parsed[0], &ctx(can_write, &aliases, &images));
        assert_eq!(got.change, want_change, "case {name}");
        let kind = match &got.reply {
            Reply::Ack { .. } => "ack",
            Reply::Error { usage, .. } => {
                assert!(usage.starts_with('/'), "case {name}: usage {usage}");
                "error"
            }
            Reply::Refused { .. } => "refused",
            Reply::Help => "help",
        };
        assert_eq!(kind, want_reply, "case {name}: {:?}", got.reply);
    }
    let closed = Context { pr_open: false, ..ctx(true, &aliases, &images) };
    assert!(matches!(interpret(&parse_comment("/recreate")[0], &closed).reply, Reply::Error { .. }), "recreate needs an open PR");
}

#[test]
fn unpin_lifts_pins_on_every_pr_and_replies_mark_handled_comments() {
    let mut ledgers = vec![
        (1, Ledger { holds: vec![stored(HoldKind::Pin, "api", None, 1), stored(HoldKind::Ignore, "api", Some("1.3.0"), 1)], ..Ledger::default() }),
        (2, Ledger { holds: vec![stored(HoldKind::Pin, "web", Some("2.0"), 2)], ..Ledger::default() }),
        (3, Ledger::default()),
    ];
    assert_eq!(apply_change(&mut ledgers, 3, &Change::Unpin(Some("api".into()))), vec![1]);
    assert_eq!(ledgers[0].1.holds.len(), 1, "the ignore stays");
    assert_eq!(apply_change(&mut ledgers, 3, &Change::Unpin(None)), vec![2]);
    assert!(ledgers[1].1.holds.is_empty());
    assert_eq!(apply_change(&mut ledgers, 3, &Change::Hold(vec![stored(HoldKind::Pin, "api", Some("1.0"), 3)])), vec![3]);
    assert_eq!(apply_change(&mut ledgers, 3, &Change::Hold(vec![stored(HoldKind::Pin, "api", Some("1.1"), 4)])), vec![3]);
    assert_eq!(ledgers[2].1.holds.len(), 1, "a newer pin replaces the older on the same PR");

    let bodies = [format!("done\n{}", reply_marker(12)), "no marker".to_string(), format!("{}{}", reply_marker(3), reply_marker(4))];
    assert_eq!(replied_to(&bodies), vec![12, 3, 4]);
}
