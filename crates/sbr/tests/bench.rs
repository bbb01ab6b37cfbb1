//! `sbr bench` end to end, shrunk by the hidden `--smoke` flag to about a
//! second: the report's shape, the targets, the plot, the flush and round
//! trip counts the durability rules imply, and the device options every
//! device command takes.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const SBR: &str = env!("CARGO_BIN_EXE_sbr");

fn dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(base)
        .unwrap()
}

/// The rows of a smoke run (see the count in the smoke test).
const ROWS: usize = 9 * 2 * 2 + 2 + 1 + 4 + (2 * 2 + 2) * 2;

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// Runs `sbr bench --smoke` with `args` in `d`, with `--json`; returns the
/// report and the standard output, after checking that it succeeded.
fn smoke(d: &tempfile::TempDir, args: &[&str]) -> (Value, String) {
    let json = d.path().join("bench.json");
    let out = Command::new(SBR)
        .args(["bench", "--smoke"])
        .args(args)
        .arg("--dir")
        .arg(d.path())
        .arg("--json")
        .arg(&json)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sbr bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (report, stdout)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

#[test]
fn smoke_run_reports_rows_targets_and_a_plot() {
    let d = dir();
    let svg = d.path().join("bench.svg");
    let (report, stdout) = smoke(&d, &["--plot", svg.to_str().unwrap()]);
    assert!(stdout.contains("Step 1"), "{stdout}");
    assert!(stdout.contains("Targets"), "{stdout}");
    assert_eq!(report["mode"], "smoke");
    for key in [
        "dsync_small_writes_per_s",
        "dsync_64k_writes_per_s",
        "dsync_1m_write_mb_per_s",
        "small_reads_per_s",
        "read_1m_mb_per_s",
    ] {
        assert!(num(&report["limits"], key) > 0.0, "limits.{key}");
    }

    let rows = report["rows"].as_array().expect("rows");
    // The run's own I/O path, and where the kernel has both, the rows of
    // the other path: push+advance, stream, pop, drain x 2 payloads x 2
    // modes, and the idle-consumer latency of 100-byte items in each.
    let path = report["io_path"].as_str().expect("io_path").to_string();
    assert!(path == "sync" || path == "uring", "{path}");
    let other = rows
        .iter()
        .filter(|r| r["io_path"] != path.as_str())
        .count();
    assert!(
        other == 0 || other == 4 * 2 * 2 + 2,
        "{other} rows of the other path"
    );
    assert_eq!(
        report["io_paths"].as_array().expect("io_paths").len(),
        other
    );
    if path == "uring" {
        // io_uring is there, so sync always is.
        assert_eq!(other, 18);
    }
    // 9 scenarios x 2 payloads x 2 modes, the idle-consumer latency of
    // 100-byte items in each mode, the CLI row, 4 NBD/local rows; format
    // 2: push+advance and push_many(256) x 2 payloads, the journal with 4
    // threads and the idle latency of 100-byte items, in each mode.
    assert_eq!(rows.len() - other, ROWS, "{rows:#?}");
    for r in rows {
        for key in [
            "scenario",
            "durability",
            "payload_bytes",
            "batch",
            "items_per_s",
            "mb_per_s",
            "limit",
            "ratio_to_limit",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        if r["device"] == "qemu-nbd" && !on_path("qemu-nbd") {
            continue;
        }
        let items = num(r, "items_per_s");
        let limit = num(r, "limit");
        assert!(items > 0.0 && limit > 0.0, "{r}");
        let ratio = num(r, "ratio_to_limit");
        assert!(
            (ratio - items / limit).abs() <= 1e-9 * ratio.max(1.0),
            "{r}"
        );
        let mb = num(r, "mb_per_s");
        let payload = num(r, "payload_bytes");
        assert!(
            (mb - items * payload / 1e6).abs() <= 1e-9 * mb.max(1.0),
            "{r}"
        );
    }
    let row = |scenario: &str, durability: &str, payload: u64| {
        rows.iter()
            .find(|r| {
                r["scenario"] == scenario
                    && r["durability"] == durability
                    && r["payload_bytes"] == payload
            })
            .unwrap_or_else(|| panic!("no row {scenario} {durability} {payload}"))
    };
    // The durability rules, as counted on the device: a durable publish
    // flushes the data, then writes the pointer durably (two flushes); the
    // process-crash mode never flushes.
    assert_eq!(
        row("push+advance", "power-loss", 100)["flushes_per_publish"],
        2.0
    );
    assert_eq!(
        row("push+advance", "process-crash", 100)["flushes_per_publish"],
        0.0
    );
    // Round trips, counted per side: a durable publish is a data write, a
    // flush and a durable pointer write; without flushes, two plain
    // writes (and the producer reads the consumer's sector now and then).
    // A release is at least the pointer write.
    for durability in ["power-loss", "process-crash"] {
        let r = row("push+advance", durability, 100);
        assert!(r.get("round_trips_per_release").is_none(), "{r}");
        let p = &r["round_trips"]["producer"];
        let n = |k: &str| num(p, k);
        let publications = n("producer_sector_writes");
        // Operations in flight together (a push's data write with its
        // look at the consumer sector, on io_uring) count once.
        let ops = n("reads") + n("writes") + n("durable_writes") + n("flushes") - n("overlapped");
        let rt = num(r, "round_trips_per_publish");
        assert!((rt - ops / publications).abs() < 1e-9, "{r}");
        if durability == "power-loss" {
            assert_eq!(n("durable_writes"), publications, "{r}");
            assert_eq!(n("flushes"), publications, "{r}");
            assert!(n("writes") >= publications && rt >= 3.0, "{r}");
        } else {
            assert_eq!(n("durable_writes") + n("flushes"), 0.0, "{r}");
            assert!(n("writes") >= 2.0 * publications && rt >= 2.0, "{r}");
        }
        let pop = row("pop+advance", durability, 100);
        assert!(num(pop, "round_trips_per_release") >= 1.0, "{pop}");
    }
    // Rows with both sides count both, the latency peer's in its process.
    // A publication with `advance` is three round trips (data, flush,
    // durable pointer); T8's producer publishes with `advance_pipelined`:
    // the pointer rides with the next batch's data, then one flush.
    for (scenario, per_publish) in [("latency (2 processes)", 3.0), ("producer+consumer", 2.0)] {
        let r = row(scenario, "power-loss", 100);
        assert!(num(r, "round_trips_per_publish") >= per_publish, "{r}");
        assert!(num(r, "round_trips_per_release") >= 1.0, "{r}");
    }
    let stdout_header = stdout.lines().find(|l| l.starts_with("scenario")).unwrap();
    assert!(stdout_header.contains("rt/pub") && stdout_header.contains("rt/rel"));
    // A batch of 256 items of 1 MiB cannot fit the 16 MiB smoke ring: it is
    // capped, and the row says so.
    let capped = row("push_many(256)+advance", "power-loss", 1_048_576);
    assert!(num(capped, "batch") < 256.0, "{capped}");
    assert!(
        capped["note"].as_str().unwrap().contains("capped"),
        "{capped}"
    );
    for scenario in ["latency (2 processes)", "latency, idle consumer"] {
        let latency = row(scenario, "power-loss", 100);
        assert!(num(latency, "latency_p99_us") >= num(latency, "latency_p50_us"));
        assert!(num(latency, "latency_p50_us") > 0.0);
    }

    // Format 2 beside format 1 in the same run: one flush per publication
    // (format 1 pays two), and a latency row.
    let f2 = row("format 2 push+advance", "power-loss", 100);
    assert!((num(f2, "flushes_per_publish") - 1.0).abs() < 0.05, "{f2}");
    let f1 = row("push+advance", "power-loss", 100);
    assert!((num(f1, "flushes_per_publish") - 2.0).abs() < 0.05, "{f1}");
    let f2_latency = row("format 2 latency, idle consumer", "power-loss", 100);
    assert!(num(f2_latency, "latency_p50_us") > 0.0, "{f2_latency}");
    row("format 2 journal 4 threads", "power-loss", 100);

    let targets = report["targets"].as_array().expect("targets");
    let ids: Vec<&str> = targets.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11"]
    );
    for t in targets {
        assert!(
            t.get("value").is_some() && t["goal"].as_f64().is_some(),
            "{t}"
        );
        let parts = t["parts"].as_array().unwrap();
        assert!(!parts.is_empty(), "{t}");
        let all = parts.iter().all(|p| p["met"].as_bool().unwrap());
        assert_eq!(t["met"].as_bool(), Some(all), "{t}");
    }
    let target = |id: &str| targets.iter().find(|t| t["id"] == id).unwrap();
    // The streaming producer pays one flush per published batch (plus the
    // final sync of each run, which the value leaves out).
    let t2 = &target("T2")["parts"][1];
    assert_eq!(t2["name"], "flushes per published batch, besides syncs");
    assert!(num(t2, "value") <= 1.0, "{t2}");
    // Peak memory of the two CLI processes was read, and is plausible.
    for p in &target("T7")["parts"].as_array().unwrap()[..2] {
        let mib = num(p, "value");
        assert!(mib > 0.5 && mib < 1024.0, "{p}");
    }
    if on_path("qemu-nbd") {
        for p in target("T8")["parts"].as_array().unwrap() {
            assert!(num(p, "value") > 0.0, "{p}");
        }
    } else {
        assert!(target("T8")["detail"]
            .as_str()
            .unwrap()
            .contains("not installed"));
    }

    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "not an SVG");
    assert!(plot.contains("against batch size") && plot.contains("against payload size"));
}

/// `--durability`, `--sector-size` and `--buffered` reach every device the
/// bench opens, the latency peer's included (a peer opening the ring with
/// another sector size would find it corrupt).
#[test]
fn device_options_reach_every_device() {
    let d = dir();
    let options = ["--durability", "process-crash", "--sector-size", "4096"];
    let (report, _) = smoke(&d, &[&options[..], &["--buffered"]].concat());
    let description = report["device_description"].as_str().unwrap();
    assert!(
        description.contains("of 4096 bytes") && description.contains("buffered"),
        "{description}"
    );
    assert_eq!(report["limits"]["small_bytes"], 4096);
    let rows = report["rows"].as_array().unwrap();
    let scenarios: Vec<&str> = rows
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    // The rows of one mode, the latency peer's (sbr bench-peer) and the
    // CLI's (sbr produce and sbr consume) included.
    for s in [
        "push+advance",
        "pop+advance",
        "latency (2 processes)",
        "producer+consumer",
    ] {
        assert!(scenarios.contains(&s), "{s} missing: {scenarios:?}");
    }
    for r in rows {
        if r["scenario"] == "sbr produce | sbr consume" {
            continue; // the mode of its target, T7
        }
        assert_eq!(r["durability"], "process-crash", "{r}");
        if r["device"] == "qemu-nbd" && !on_path("qemu-nbd") {
            continue;
        }
        assert!(num(r, "items_per_s") > 0.0, "{r}");
    }
}

#[test]
fn the_io_option_chooses_the_path_and_the_other_path_is_compared() {
    let d = dir();
    let (report, stdout) = smoke(&d, &["--io", "sync", "--durability", "process-crash"]);
    assert_eq!(report["io_path"], "sync");
    assert!(stdout.contains("io: sync"), "{stdout}");
    let rows = report["rows"].as_array().unwrap();
    for r in rows {
        let marked = r["scenario"].as_str().unwrap().ends_with(" [uring]");
        assert_eq!(r["io_path"] == "uring", marked, "{r}");
    }
    // Each row of the other path is set beside the run's own.
    for c in report["io_paths"].as_array().unwrap() {
        assert_eq!(c["paths"], serde_json::json!(["sync", "uring"]), "{c}");
        let [s, u] = [0, 1].map(|i| c["ratios"][i].as_f64().unwrap());
        let expected = match c.get("latency_p50_us") {
            Some(l) => l[0].as_f64().unwrap() / l[1].as_f64().unwrap(),
            None => u / s,
        };
        assert!((num(c, "uring_over_sync") - expected).abs() < 1e-9, "{c}");
    }
    let compared = report["io_paths"].as_array().unwrap().len();
    assert!(compared == 0 || compared == 4 * 2 + 1, "{compared}");
    if compared > 0 {
        assert!(stdout.contains("io_uring against sync"), "{stdout}");
        assert!(
            stdout.contains("allocations per item on the uring path"),
            "{stdout}"
        );
    }
}

#[test]
fn help_says_what_the_device_options_mean_for_the_bench() {
    let out = Command::new(SBR)
        .args(["bench", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        help.contains("--durability") && help.contains("Default: both"),
        "{help}"
    );
    assert!(
        help.contains("--sector-size") && help.contains("every device the bench opens"),
        "{help}"
    );
    assert!(
        help.contains("--buffered") && help.contains("page cache"),
        "{help}"
    );
}

/// Every scenario measures at least one item however short its time (a
/// thread that starts late must not make a row of 0 items/s): the
/// streaming producer's item generator once stopped before its first
/// chunk when it started after the budget had run out.
#[test]
fn every_row_measures_something_however_short_the_budget() {
    let (report, _) = smoke(&dir(), &["--budget", "1ns"]);
    let rows = report["rows"].as_array().unwrap();
    let other = report["io_paths"].as_array().unwrap().len();
    assert_eq!(rows.len(), ROWS + other, "{rows:#?}");
    for r in rows {
        if r["device"] == "qemu-nbd" && !on_path("qemu-nbd") {
            continue;
        }
        assert!(num(r, "items_per_s") > 0.0, "{r}");
    }
}
