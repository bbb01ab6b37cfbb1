//! What users expect of a command-line tool: completion scripts and man
//! pages that cover exactly the commands and options `sbr` has, hidden ones
//! left out, and `--version` naming the on-disk formats. The commands and
//! options are read from `sbr --help`, clap's rendering of its definitions,
//! so nothing here lists them by hand.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::{code, dir, output_of, run, stderr, stdout, wait_timeout, LIMIT};

/// Runs `sbr args`, which must succeed quietly; its standard output.
fn ok(args: &[&str]) -> String {
    let o = run(args, b"");
    assert_eq!(code(&o), 0, "sbr {args:?}: {}", stderr(&o));
    assert_eq!(stderr(&o), "", "sbr {args:?} wrote to stderr");
    stdout(&o)
}

/// The visible subcommands, as `sbr --help` lists them (clap's `help`
/// included).
fn subcommands() -> Vec<String> {
    let top = ok(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(commands.len() >= 10, "{top}");
    assert!(commands.iter().any(|c| c == "help"), "{top}");
    commands
}

/// The visible subcommands that have a man page (all but `help`).
fn paged() -> Vec<String> {
    subcommands().into_iter().filter(|c| c != "help").collect()
}

/// The long options that `sbr [cmd] --help` lists, global ones and
/// `--help` included.
fn options(cmd: Option<&str>) -> BTreeSet<String> {
    let args: Vec<&str> = cmd.into_iter().chain(["--help"]).collect();
    let help = ok(&args);
    let options: BTreeSet<String> = help
        .lines()
        .filter_map(|line| {
            // An option's line: "  -v, --verbose...  Log ..." or
            // "      --dir <DIR>  Write ..."; a description on lines of its
            // own is indented further.
            let rest = line.trim_start();
            if line.len() - rest.len() > 6 || !rest.starts_with('-') {
                return None;
            }
            rest.split_whitespace()
                .take_while(|w| w.starts_with('-'))
                .map(|w| w.trim_end_matches([',', '.']))
                .find(|w| w.starts_with("--"))
                .map(str::to_string)
        })
        .collect();
    assert!(options.contains("--help"), "{help}");
    options
}

/// Hidden commands and options: they exist, and no completion script or
/// man page may offer them.
const HIDDEN: &[&[&str]] = &[&["bench-peer"], &["demo-peer"], &["bench", "--smoke"]];

/// The hidden names, each checked to exist: `sbr ... --help` accepts it
/// (and rejects a made-up one), so their absence below means something.
fn hidden() -> Vec<&'static str> {
    assert_ne!(code(&run(&["bench", "--no-such-option", "--help"], b"")), 0);
    HIDDEN
        .iter()
        .map(|args| {
            let with_help: Vec<&str> = args.iter().copied().chain(["--help"]).collect();
            ok(&with_help);
            *args.last().unwrap()
        })
        .collect()
}

/// The words of a script: runs of letters, digits, `-` and `_`.
fn words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Whether a completion script for `shell` offers long option `option`.
fn offers_option(shell: &str, script: &str, option: &str) -> bool {
    match shell {
        // fish: `complete -c sbr ... -l sector-size ...`
        "fish" => script.lines().any(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] == "-l" && w[1] == &option[2..])
        }),
        _ => words(script).contains(option),
    }
}

#[test]
fn completions_offer_every_visible_command_and_option_and_nothing_hidden() {
    let commands = subcommands();
    let mut all_options = options(None);
    for c in commands.iter().filter(|c| *c != "help") {
        all_options.extend(options(Some(c)));
    }
    let hidden = hidden();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&["completions", shell]);
        assert!(script.lines().count() > 20, "{shell}: {script}");
        let words = words(&script);
        for c in &commands {
            assert!(words.contains(c.as_str()), "{shell}: no command {c}");
        }
        for o in &all_options {
            assert!(offers_option(shell, &script, o), "{shell}: no option {o}");
        }
        for h in &hidden {
            let offered = if h.starts_with("--") {
                offers_option(shell, &script, h)
            } else {
                words.contains(h)
            };
            assert!(!offered, "{shell}: offers hidden {h}");
        }
    }
}

/// Fails the test, naming the Debian package to install, when `tool` is
/// missing.
fn need(tool: &str, package: &str) {
    match Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("{tool} is missing: install {package} (scripts/setup-tests.sh does)")
        }
        spawned => wait_timeout(&mut spawned.unwrap(), LIMIT, tool),
    };
}

/// Runs `bash args` with `stdin`, within [`LIMIT`].
fn bash(args: &[&str], stdin: &[u8]) -> Output {
    need("bash", "bash");
    let mut cmd = Command::new("bash");
    cmd.args(args);
    output_of(cmd, stdin, LIMIT)
}

/// What bash offers for the last of `words` (`sbr` first), with `script`
/// loaded, as it would on a TAB there.
fn bash_offers(script: &Path, words: &[&str]) -> BTreeSet<String> {
    let complete = r#"source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
        _sbr sbr "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}";
        printf '%s\n' "${COMPREPLY[@]}""#;
    let mut args = vec!["-c", complete, "bash", script.to_str().unwrap()];
    args.extend(words);
    let o = bash(&args, b"");
    assert_eq!(code(&o), 0, "{words:?}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_exactly_the_visible_commands_and_options() {
    let script = ok(&["completions", "bash"]);
    let o = bash(&["-n"], script.as_bytes());
    assert_eq!(code(&o), 0, "bash -n: {}", stderr(&o));
    let d = dir();
    let path = d.path().join("sbr.bash");
    std::fs::write(&path, &script).unwrap();

    let top = bash_offers(&path, &["sbr", ""]);
    let (flags, commands): (BTreeSet<String>, BTreeSet<String>) =
        top.into_iter().partition(|w| w.starts_with('-'));
    let expected: BTreeSet<String> = subcommands().into_iter().collect();
    assert_eq!(commands, expected);
    let long: BTreeSet<String> = flags.into_iter().filter(|f| f.starts_with("--")).collect();
    assert_eq!(long, options(None));
    for c in paged() {
        let offered = bash_offers(&path, &["sbr", &c, "--"]);
        assert_eq!(offered, options(Some(&c)), "sbr {c} --<TAB>");
    }
    let mut shells = bash_offers(&path, &["sbr", "completions", ""]);
    shells.retain(|w| !w.starts_with('-'));
    assert_eq!(shells, ["bash", "fish", "zsh"].map(String::from).into());
}

/// `page` as `man -l` renders it, with every groff warning enabled; an
/// error with what it said on stderr, if anything.
fn render(page: &[u8]) -> Result<String, String> {
    need("man", "man-db");
    let mut man = Command::new("man");
    man.args(["--warnings=w", "-l", "-"])
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat");
    let o = output_of(man, page, LIMIT);
    if code(&o) != 0 || !o.stderr.is_empty() {
        return Err(format!("man -l: exit {}: {}", code(&o), stderr(&o)));
    }
    Ok(stdout(&o))
}

#[test]
fn the_render_check_catches_a_broken_page() {
    let broken = b".TH x 1\n.SH NAME\nx \\- y\n.NOSUCHMACRO\n";
    let err = render(broken).expect_err("man -l did not warn about an unknown macro");
    assert!(err.contains("NOSUCHMACRO"), "{err}");
}

/// A roff page as plain text for searching: `\-` is a `-`.
fn text(roff: &str) -> String {
    roff.replace("\\-", "-")
}

#[test]
fn man_pages_name_every_visible_command_and_option_and_render_cleanly() {
    let hidden = hidden();
    let sbr = ok(&["man"]);
    let rendered = render(sbr.as_bytes()).unwrap();
    assert!(rendered.starts_with("sbr(1)"), "{rendered}");
    let sbr = text(&sbr);
    for c in paged() {
        assert!(sbr.contains(&format!("sbr-{c}(1)")), "sbr(1) lacks {c}");
    }
    assert!(!sbr.contains("sbr-help"), "sbr(1) names a help page");
    for o in options(None) {
        assert!(sbr.contains(&o), "sbr(1) lacks {o}");
    }
    for c in paged() {
        let page = ok(&["man", &c]);
        let rendered = render(page.as_bytes()).unwrap_or_else(|e| panic!("sbr-{c}(1): {e}"));
        assert!(
            rendered.starts_with(&format!("sbr-{c}(1)")),
            "{c}: {rendered}"
        );
        let page = text(&page);
        assert!(page.contains(&format!("sbr {c}")), "{c}: {page}");
        for o in options(Some(&c)) {
            assert!(page.contains(&o), "sbr-{c}(1) lacks {o}");
        }
        for h in &hidden {
            assert!(!words(&page).contains(h), "sbr-{c}(1) names hidden {h}");
        }
    }
    for h in &hidden {
        assert!(!words(&sbr).contains(h), "sbr(1) names hidden {h}");
    }
}

#[test]
fn man_dir_writes_one_page_per_visible_command() {
    let d = dir();
    let out = d.path().join("share/man/man1");
    let said = ok(&["man", "--dir", out.to_str().unwrap()]);
    let mut expected = vec!["sbr.1".to_string()];
    expected.extend(paged().iter().map(|c| format!("sbr-{c}.1")));
    let wrote: String = expected
        .iter()
        .map(|f| format!("wrote {}\n", out.join(f).display()))
        .collect();
    assert_eq!(said, wrote);
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    expected.sort();
    assert_eq!(files, expected);
    // The same pages as `sbr man [SUBCOMMAND]` prints.
    assert_eq!(
        std::fs::read_to_string(out.join("sbr.1")).unwrap(),
        ok(&["man"])
    );
    for c in paged() {
        let file = std::fs::read_to_string(out.join(format!("sbr-{c}.1"))).unwrap();
        assert_eq!(file, ok(&["man", &c]), "sbr-{c}.1");
    }
}

#[test]
fn man_refuses_a_hidden_or_unknown_subcommand() {
    for name in ["bench-peer", "help", "nonsense"] {
        let o = run(&["man", name], b"");
        assert_eq!(code(&o), 2, "sbr man {name}: {}", stderr(&o));
        assert_eq!(stdout(&o), "");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!(
                "error: sbr has no subcommand \"{name}\"; one of: create, "
            )),
            "{err}"
        );
        let listed = err.split_once("one of: ").unwrap().1;
        assert!(
            !listed.contains("peer") && !listed.contains("help"),
            "{err}"
        );
    }
}

#[test]
fn version_names_the_formats() {
    // Both formats, and `sbr create` makes either.
    assert!(options(Some("create")).contains("--format"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        ok(&["--version"]),
        format!("sbr {version}\nformats: 1 (shared-block-ring 1.0, OCaml-compatible), 2 (checksummed, one flush per publication, owner lease)\n")
    );
    assert_eq!(ok(&["-V"]), format!("sbr {version}\n"));
}
