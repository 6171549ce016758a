//! Every command line the README shows, and every example in the subcommands' help (what
//! the man pages print), parses as written, options around the filter expression included,
//! and its expression compiles.
use capture_daemon::filter::Filter;
use clap::{CommandFactory, Parser};

use super::{Cli, Command};

const README: &str = include_str!("../../../README.md");

/// The `ringcap ...` lines of the README's code blocks.
fn readme_command_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_code = false;
    for line in README.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code && line.starts_with("ringcap ") {
            lines.push(line.to_string());
        }
    }
    lines
}

/// The examples in backquotes of the subcommands' descriptions: `ringcap SUBCOMMAND`
/// with arguments (a bare `ringcap run` names a command, and the options' help names
/// options, `ringcap run --http ADDR:PORT`: neither is an example).
fn help_examples() -> Vec<String> {
    let command = Cli::command();
    let texts: Vec<String> = command
        .get_subcommands()
        .flat_map(|sub| [sub.get_about(), sub.get_long_about()])
        .flatten()
        .map(|text| text.to_string())
        .collect();
    let mut examples: Vec<String> = texts
        .iter()
        .flat_map(|text| text.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|span| span.starts_with("ringcap ") && span.split_whitespace().count() > 2)
        .collect();
    examples.sort();
    examples.dedup();
    examples
}

/// The words of a shell command line up to its comment, pipe or redirection; `...` (the
/// options of the lines before it) reads as an interface and a ring directory.
fn words(line: &str) -> Vec<String> {
    let line = line.split(" #").next().unwrap_or(line);
    let words = shlex::split(line).unwrap_or_else(|| panic!("unbalanced quotes in: {line}"));
    words
        .into_iter()
        .take_while(|word| word != "|" && !word.starts_with('>'))
        .flat_map(|word| match word.as_str() {
            "..." => vec!["-i".into(), "eth0".into(), "--dir".into(), "/srv/ring".into()],
            _ => vec![word],
        })
        .collect()
}

/// The filter expression of a parsed command line, as its subcommand joins it.
fn expression(command: &Command) -> Vec<String> {
    match command {
        Command::Capture(args) => args.kernel.expression.clone(),
        Command::Run(args) => args.kernel.expression.clone(),
        Command::Pull(args) => args.expression.clone(),
        Command::Pin(args) => args.expression.clone(),
        Command::Bench(args) => args.expression.clone(),
        _ => Vec::new(),
    }
}

fn check(line: &str) {
    let cli = Cli::try_parse_from(words(line)).unwrap_or_else(|e| panic!("`{line}` does not parse:\n{e}"));
    let expression = expression(&cli.command);
    assert!(
        expression.iter().all(|word| !word.starts_with('-')),
        "`{line}`: an option was read as part of the expression {expression:?}"
    );
    if let Err(e) = Filter::compile(&expression.join(" ")) {
        panic!("`{line}`: the expression {expression:?} does not compile: {e}");
    }
}

#[test]
fn every_command_line_of_the_readme_parses() {
    let lines = readme_command_lines();
    assert!(lines.len() >= 20, "found only {lines:?}");
    for line in &lines {
        check(line);
    }
}

#[test]
fn every_example_in_the_help_parses() {
    let examples = help_examples();
    assert!(examples.len() >= 3 && examples.iter().any(|e| e.starts_with("ringcap pin ")), "{examples:?}");
    for example in &examples {
        check(example);
    }
}

#[test]
fn options_go_before_or_after_the_expression() {
    let parse = |line: &str| match Cli::try_parse_from(words(line)).expect("parses").command {
        Command::Pull(args) => (args.expression, args.write),
        _ => unreachable!(),
    };
    let after = parse("ringcap pull --dir /r host 10.0.1.5 and port 443 -w x.pcap --last 10m");
    let before = parse("ringcap pull --dir /r -w x.pcap --last 10m host 10.0.1.5 and port 443");
    assert_eq!(after, before);
    assert_eq!(after.0.join(" "), "host 10.0.1.5 and port 443");
    // `--` ends the options, as with getopt.
    let (expression, _) = parse("ringcap pull --dir /r -w x.pcap -- host 10.0.1.5");
    assert_eq!(expression, ["host", "10.0.1.5"]);
}
