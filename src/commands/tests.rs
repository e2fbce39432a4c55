//! Table tests: comment text in, commands and errors out. Case names show in failures.

use super::*;

fn pin(alias: Option<&str>, version: Option<&str>) -> Result<Command, CommandError> {
    Ok(Command::Pin { alias: alias.map(str::to_string), version: version.map(str::to_string) })
}
fn unpin(alias: Option<&str>) -> Result<Command, CommandError> {
    Ok(Command::Unpin { alias: alias.map(str::to_string) })
}
fn ignore(alias: Option<&str>, version: &str) -> Result<Command, CommandError> {
    Ok(Command::Ignore { alias: alias.map(str::to_string), version: version.to_string() })
}
fn unknown(word: &str, did_you_mean: CommandName) -> Result<Command, CommandError> {
    Err(CommandError::Unknown { word: word.to_string(), did_you_mean })
}
fn too_many(command: CommandName, extra: &[&str]) -> Result<Command, CommandError> {
    Err(CommandError::TooManyArgs { command, extra: extra.iter().map(|s| s.to_string()).collect() })
}
fn bad_version(command: CommandName, version: &str) -> Result<Command, CommandError> {
    Err(CommandError::InvalidVersion { command, version: version.to_string() })
}
fn bad_alias(command: CommandName, alias: &str) -> Result<Command, CommandError> {
    Err(CommandError::InvalidAlias { command, alias: alias.to_string() })
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// (case name, comment body, what `parse_comment` returns)
type Case<'a> = (&'a str, &'a str, Vec<Result<Command, CommandError>>);

fn check(cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (name, body, expected) in cases {
        let got = parse_comment(body);
        if &got != expected {
            failures.push(format!("case {name:?}\n  comment: {body:?}\n  expected: {expected:?}\n  got:      {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn each_command_form() {
    use CommandName::*;
    check(&[
        ("pin everything", "/pin", vec![pin(None, None)]),
        ("pin one alias", "/pin api", vec![pin(Some("api"), None)]),
        ("pin alias at version", "/pin api 1.2.3", vec![pin(Some("api"), Some("1.2.3"))]),
        ("pin at digest", &format!("/pin api {DIGEST}"), vec![pin(Some("api"), Some(DIGEST))]),
        ("pin default alias with a path", "/pin bitnami/redis 7.2", vec![pin(Some("bitnami/redis"), Some("7.2"))]),
        ("unpin everything", "/unpin", vec![unpin(None)]),
        ("unpin one alias", "/unpin api", vec![unpin(Some("api"))]),
        ("ignore a version", "/ignore 1.3.0", vec![ignore(None, "1.3.0")]),
        ("ignore a v-prefixed version", "/ignore v1.3.0-rc.1", vec![ignore(None, "v1.3.0-rc.1")]),
        ("ignore for one alias", "/ignore api 1.3.0", vec![ignore(Some("api"), "1.3.0")]),
        ("ignore a digest", &format!("/ignore {DIGEST}"), vec![ignore(None, DIGEST)]),
        ("recreate", "/recreate", vec![Ok(Command::Recreate)]),
        ("help", "/help", vec![Ok(Command::Help)]),
        ("leading whitespace", "   /pin api", vec![pin(Some("api"), None)]),
        ("tabs between arguments", "/pin\tapi\t 1.2.3  ", vec![pin(Some("api"), Some("1.2.3"))]),
        ("arguments in backticks", "/pin `api` `1.2.3`", vec![pin(Some("api"), Some("1.2.3"))]),
        ("underscore-led tag", "/ignore _latest", vec![ignore(None, "_latest")]),
        ("128-character tag", &format!("/ignore {}", "a".repeat(128)), vec![ignore(None, &"a".repeat(128))]),
        ("version with plus is no tag", "/ignore 1.2.3+build", vec![bad_version(Ignore, "1.2.3+build")]),
    ]);
}

#[test]
fn not_commands_in_quotes_code_and_html_comments() {
    check(&[
        ("quote", "> /pin", vec![]),
        ("nested quote", "> > /pin api", vec![]),
        ("indented quote", "  > /recreate", vec![]),
        ("quote then own line", "> /pin\n\n/unpin", vec![unpin(None)]),
        ("quote then next line is text", "> please don't /pin\n/help", vec![Ok(Command::Help)]),
        ("backtick fence", "```\n/pin\n```", vec![]),
        ("tilde fence", "~~~\n/pin\n~~~", vec![]),
        ("long fence", "`````\n```\n/pin\n```\n`````", vec![]),
        ("fence with info string", "```sh\n/recreate\n```\n/help", vec![Ok(Command::Help)]),
        ("indented fence in a list", "- try:\n  ```\n  /pin\n  ```", vec![]),
        ("fence closed by a shorter run stays open", "````\n/pin\n```\n/unpin\n````\n/help", vec![Ok(Command::Help)]),
        ("tilde fence not closed by backticks", "~~~\n```\n/pin\n~~~\n/help", vec![Ok(Command::Help)]),
        ("unclosed fence runs to the end", "```\n/pin\n\n/unpin", vec![]),
        ("indented code block", "Run:\n\n    /pin api\n    /unpin\n\n/help", vec![Ok(Command::Help)]),
        ("indented code block by tab", "\t/pin", vec![]),
        ("indented line continuing a paragraph is text", "I mean\n     /pin", vec![pin(None, None)]),
        ("inline code", "`/pin`", vec![]),
        ("inline code with double backticks", "``/pin api``", vec![]),
        ("inline code in a sentence", "type `/pin api` to hold it", vec![]),
        ("line inside a multi-line code span", "see ``this\n/pin\nthing`` here", vec![]),
        ("unmatched backtick is literal", "a ` b\n/pin", vec![pin(None, None)]),
        ("html comment", "<!-- /pin -->", vec![]),
        ("multi-line html comment", "<!--\n/pin\n/unpin\n-->\n/help", vec![Ok(Command::Help)]),
        ("unclosed html comment", "<!--\n/pin", vec![]),
        ("html comment before a command", "<!-- bot: hi --> /help", vec![Ok(Command::Help)]),
        ("command after inline comment on a line", "/pin <!-- api -->", vec![pin(None, None)]),
        ("fence inside html comment", "<!--\n```\n-->\n/help", vec![Ok(Command::Help)]),
        ("html comment inside fence", "```\n<!--\n```\n/help", vec![Ok(Command::Help)]),
        ("escaped slash", "\\/pin", vec![]),
        ("list item", "- /pin", vec![]),
        ("mid-sentence", "please /pin api", vec![]),
    ]);
}

#[test]
fn several_commands_line_endings_and_trailing_text() {
    use CommandName::*;
    check(&[
        ("two commands", "/pin api\n/ignore web 2.0.0", vec![pin(Some("api"), None), ignore(Some("web"), "2.0.0")]),
        (
            "commands among prose",
            "Thanks!\n\n/unpin api\nand\n/recreate\n\nBye",
            vec![unpin(Some("api")), Ok(Command::Recreate)],
        ),
        ("CRLF", "/pin api 1.2.3\r\n/help\r\n", vec![pin(Some("api"), Some("1.2.3")), Ok(Command::Help)]),
        ("bare CR", "/help\r/recreate", vec![Ok(Command::Help), Ok(Command::Recreate)]),
        ("CRLF fence", "```\r\n/pin\r\n```\r\n/help", vec![Ok(Command::Help)]),
        ("errors keep their place", "/pin a b c\n/help", vec![too_many(Pin, &["c"]), Ok(Command::Help)]),
        ("trailing text on pin", "/pin api because 1.3 is broken", vec![too_many(Pin, &["1.3", "is", "broken"])]),
        ("trailing text on recreate", "/recreate please", vec![too_many(Recreate, &["please"])]),
        ("trailing text on help", "/help me", vec![too_many(Help, &["me"])]),
        ("trailing text on unpin", "/unpin api now", vec![too_many(Unpin, &["now"])]),
        ("ignore without version", "/ignore", vec![Err(CommandError::MissingArg { command: Ignore, arg: "version" })]),
        ("empty comment", "", vec![]),
        ("only a slash", "/", vec![]),
        ("slash and space", "/ pin", vec![]),
    ]);
}

#[test]
fn unknown_and_unrelated_words() {
    use CommandName::*;
    check(&[
        ("doubled letter", "/pinn", vec![unknown("pinn", Pin)]),
        ("swapped letters", "/pni api", vec![unknown("pni", Pin)]),
        ("missing letter", "/ignor 1.0", vec![unknown("ignor", Ignore)]),
        ("two edits in a long word", "/recrate", vec![unknown("recrate", Recreate)]),
        ("two edits in a long word 2", "/unpni", vec![unknown("unpni", Unpin)]),
        ("capitalised", "/Pin", vec![unknown("Pin", Pin)]),
        ("shouting", "/HELP", vec![unknown("HELP", Help)]),
        ("swapped help", "/hepl", vec![unknown("hepl", Help)]),
        ("cc", "/cc @team", vec![]),
        ("path", "/usr/bin/env", vec![]),
        ("prow hold", "/hold", vec![]),
        ("prow lgtm", "/lgtm", vec![]),
        ("prow retest", "/retest", vec![]),
        ("prow assign", "/assign @me", vec![]),
        ("word with punctuation", "/pin!", vec![]),
        ("digits", "/p1n", vec![]),
        ("unrelated long word", "/deploy", vec![]),
    ]);
}

#[test]
fn bad_versions_and_aliases() {
    use CommandName::*;
    check(&[
        ("shell injection", "/ignore 1.2.3;rm", vec![bad_version(Ignore, "1.2.3;rm")]),
        ("command substitution", "/pin api $(id)", vec![bad_version(Pin, "$(id)")]),
        ("path traversal version", "/ignore ../../etc/passwd", vec![bad_version(Ignore, "../../etc/passwd")]),
        ("leading dot", "/ignore .hidden", vec![bad_version(Ignore, ".hidden")]),
        ("leading dash", "/ignore -rf", vec![bad_version(Ignore, "-rf")]),
        ("129 characters", &format!("/ignore {}", "a".repeat(129)), vec![bad_version(Ignore, &"a".repeat(129))]),
        ("short digest", "/ignore sha256:abc", vec![bad_version(Ignore, "sha256:abc")]),
        (
            "upper-case digest",
            &format!("/ignore {}", DIGEST.to_uppercase().replace("SHA256", "sha256")),
            vec![bad_version(Ignore, &DIGEST.to_uppercase().replace("SHA256", "sha256"))],
        ),
        ("other algorithm", "/ignore md5:abc", vec![bad_version(Ignore, "md5:abc")]),
        ("image reference instead of tag", "/pin api nginx:1.2", vec![bad_version(Pin, "nginx:1.2")]),
        ("markdown in version", "/ignore <b>1</b>", vec![bad_version(Ignore, "<b>1</b>")]),
        ("unicode lookalike", "/ignore 1\u{2024}2", vec![bad_version(Ignore, "1\u{2024}2")]),
        ("alias with equals", "/pin api=nginx", vec![bad_alias(Pin, "api=nginx")]),
        ("alias traversal", "/unpin a/../b", vec![bad_alias(Unpin, "a/../b")]),
        ("alias trailing slash", "/unpin bitnami/", vec![bad_alias(Unpin, "bitnami/")]),
        ("alias mention", "/ignore @admin 1.0", vec![bad_alias(Ignore, "@admin")]),
        ("alias checked before version", "/pin @x $(y)", vec![bad_alias(Pin, "@x")]),
        ("half-wrapped backticks stay", "/pin `api", vec![bad_alias(Pin, "`api")]),
    ]);
}

#[test]
fn every_command_parses_and_has_help() {
    let help = format_help();
    for name in CommandName::ALL {
        let parsed = parse_comment(&format!("/{}", name.word()));
        let expected_ok = name != CommandName::Ignore;
        assert_eq!(parsed.len(), 1, "{name}: {parsed:?}");
        assert_eq!(parsed[0].is_ok(), expected_ok, "{name}: {parsed:?}");
        assert!(help.contains(&format!("`{name}")), "help lacks {name}:\n{help}");
        assert!(name.usage().starts_with(&name.to_string()), "{name}: usage {}", name.usage());
    }
}

#[test]
fn help_is_not_a_command() {
    // The bot's own help reply must not trigger commands when it is read back.
    assert_eq!(parse_comment(&format_help()), vec![]);
}

#[test]
fn error_messages_name_the_problem_and_quote_safely() {
    let cases: &[(&str, &str, &str)] = &[
        ("unknown", "/pinn", "`/pinn` is not a command; did you mean `/pin`?"),
        ("too many", "/help me", "`/help` takes no more than this; unexpected `me`"),
        ("missing", "/ignore", "`/ignore` needs <version>"),
        ("backtick in value", "/ignore a`b", "``a`b``"),
        ("leading backtick in value", "/ignore `x", "`` `x ``"),
    ];
    for (name, body, wanted) in cases {
        let errors = parse_comment(body);
        let Some(Err(e)) = errors.first() else { panic!("case {name:?}: no error from {body:?}: {errors:?}") };
        assert!(e.to_string().contains(wanted), "case {name:?}: {:?} lacks {wanted:?}", e.to_string());
        assert_eq!(e.usage(), e.command().usage(), "case {name:?}");
    }
    let long = format!("/ignore {}", "x".repeat(300));
    let Some(Err(e)) = parse_comment(&long).pop() else { panic!("no error") };
    assert!(e.to_string().len() < 400, "long values are shortened: {e}");
}

#[test]
fn edit_distance_counts_swaps_once() {
    assert_eq!(edit_distance("pin", "pin"), 0);
    assert_eq!(edit_distance("pni", "pin"), 1);
    assert_eq!(edit_distance("hold", "help"), 2);
    assert_eq!(edit_distance("", "help"), 4);
}

#[test]
fn repeated_lines_count_once_and_a_comment_takes_a_bounded_number_of_commands() {
    // Issue 15: 3,000 `/help` lines made a 2.4 MB reply.
    let flood = "/help\n".repeat(3000);
    assert_eq!(parse_comment(&flood), vec![Ok(Command::Help)]);
    let mixed = "/help\n/pin api\n/help\n/pin api\n/unpin\n";
    assert_eq!(parse_comment(mixed), vec![Ok(Command::Help), pin(Some("api"), None), unpin(None)]);
    let many: String = (0..50).map(|i| format!("/ignore api 1.0.{i}\n")).collect();
    let parsed = parse_comment(&many);
    assert_eq!(parsed.len(), MAX_COMMANDS_PER_COMMENT);
    assert_eq!(parsed[0], ignore(Some("api"), "1.0.0"));
    assert_eq!(parsed[MAX_COMMANDS_PER_COMMENT - 1], ignore(Some("api"), "1.0.9"));
}
