//! README.md tells the truth about `sbr`: its command session is run and
//! its output compared, and its command table lists exactly the options
//! that `sbr` defines.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

mod common;

use common::{dir, output_of, LIMIT, SBR};

const README: &str = include_str!("../../../README.md");

/// The README's `sbr` section.
fn section() -> &'static str {
    let start = README
        .find("## The `sbr` command")
        .expect("README has a section on the sbr command");
    let rest = &README[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The commands of the first `console` block, each with the output shown
/// after it.
fn session() -> Vec<(String, String)> {
    let s = section();
    let start = s.find("```console\n").expect("a console block") + "```console\n".len();
    let block = &s[start..start + s[start..].find("```").unwrap()];
    let mut steps: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push((cmd.to_string(), String::new()));
        } else {
            let (_, out) = steps.last_mut().expect("output before any command");
            out.push_str(line);
            out.push('\n');
        }
    }
    steps
}

/// Runs `cmd` with `sh` in `dir`, `sbr` first on the PATH, standard error
/// merged into standard output as a terminal shows them; fails after
/// [`LIMIT`].
fn shell(dir: &Path, cmd: &str) -> String {
    let bin = Path::new(SBR).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("exec 2>&1; {cmd}"))
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("RUST_LOG");
    String::from_utf8(output_of(sh, b"", LIMIT).stdout).unwrap()
}

#[test]
fn the_readme_session_prints_what_it_shows() {
    let dir = dir();
    let steps = session();
    assert!(steps.len() >= 10, "{steps:?}");
    for (cmd, expected) in steps {
        let got = shell(dir.path(), &cmd);
        assert_eq!(got, expected, "README.md: `$ {cmd}` prints something else");
    }
}

/// Long options in `text`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at + 2;
        let len = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_lowercase() || **c == b'-')
            .count();
        if len > 0 && b[start].is_ascii_lowercase() {
            out.insert(format!("--{}", &text[start..start + len]));
        }
        i = start + len;
    }
    out
}

/// `sbr [cmd] --help`.
fn help(cmd: &[&str]) -> String {
    let o = Command::new(SBR).args(cmd).arg("--help").output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

/// The options a command's help lists (one per line), and whether it
/// takes a device.
fn clap_options(cmd: &str) -> (BTreeSet<String>, bool) {
    let h = help(&[cmd]);
    let options = h
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("-h, ").or(Some(l))?;
            let l = l.split_once(", ").map_or(
                l,
                |(short, rest)| {
                    if short.len() == 2 {
                        rest
                    } else {
                        l
                    }
                },
            );
            l.starts_with("--").then(|| {
                l[2..]
                    .split(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                    .next()
                    .map(|f| format!("--{f}"))
            })?
        })
        .collect();
    (options, h.contains("<DEVICE>") || h.contains("[DEVICE]"))
}

/// Options every command has, or every device command (the README says so
/// once, above the table).
const GLOBAL: &[&str] = &["--help", "--verbose", "--version"];
const DEVICE: &[&str] = &["--sector-size", "--durability", "--buffered", "--io"];

#[test]
fn the_readme_command_table_matches_the_clap_definitions() {
    let s = section();
    let mut table_commands = BTreeSet::new();
    let mut problems = Vec::new();
    for row in s.lines().filter(|l| l.starts_with("| `sbr ")) {
        let first = row[1..].split(" | ").next().unwrap();
        let commands: Vec<&str> = first
            .split("`sbr ")
            .skip(1)
            .map(|c| c.split([' ', '`']).next().unwrap())
            .collect();
        let listed = flags(first);
        for cmd in commands {
            table_commands.insert(cmd.to_string());
            let (options, takes_device) = clap_options(cmd);
            let mut defined: BTreeSet<String> = options
                .into_iter()
                .filter(|f| !GLOBAL.contains(&f.as_str()))
                .collect();
            if takes_device {
                // The README's claim: every device command takes these.
                for f in DEVICE {
                    if !defined.remove(*f) {
                        problems.push(format!("sbr {cmd} lacks {f}, which the README promises"));
                    }
                }
            }
            for f in listed.difference(&defined) {
                problems.push(format!(
                    "the table lists sbr {cmd} {f}, which sbr does not define"
                ));
            }
            for f in defined.difference(&listed) {
                problems.push(format!("sbr {cmd} defines {f}, which the table leaves out"));
            }
        }
    }
    // Every visible command has a row.
    let top = help(&[]);
    let commands: BTreeSet<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.len() >= 8, "{top}");
    for c in commands.difference(&table_commands) {
        problems.push(format!("the table has no row for sbr {c}"));
    }
    for c in table_commands.difference(&commands) {
        problems.push(format!(
            "the table has a row for sbr {c}, which does not exist"
        ));
    }
    assert!(
        problems.is_empty(),
        "README.md's command table:\n{}",
        problems.join("\n")
    );
}
