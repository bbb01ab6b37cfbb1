//! The crash test's child process, and keeping it in hand from the
//! parent.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use shared_block_ring::{Durability, FileDevice, Journal, JournalOptions};

/// Test 4: the crash test's child process, selected by this variable.
pub(crate) const CHILD_RING: &str = "SBR_JOURNAL_CHILD_RING";
pub(crate) const CHILD_THREADS: u64 = 3;

/// Runs in a child process (this test binary, re-executed): starts the
/// journal on the ring, then pushes numbered operations from several
/// threads, printing `acked <id>` after each push returns, until killed.
/// `perform` appends the operations, 8 bytes each, to a log file.
pub(crate) fn crash_child(ring: &str) -> ! {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let run: u64 = var("SBR_JOURNAL_CHILD_RUN").parse().unwrap();
    let durability: Durability = var("SBR_JOURNAL_CHILD_MODE").parse().unwrap();
    let flush = Duration::from_millis(var("SBR_JOURNAL_CHILD_FLUSH_MS").parse().unwrap());
    let slow = Duration::from_millis(var("SBR_JOURNAL_CHILD_SLOW_MS").parse().unwrap());
    let mut log = OpenOptions::new()
        .append(true)
        .open(var("SBR_JOURNAL_CHILD_LOG"))
        .unwrap();
    let perform = move |ops: &[Vec<u8>]| -> io::Result<()> {
        let mut records = Vec::with_capacity(ops.len() * 8);
        for op in ops {
            // Anything but an 8-byte operation is logged as u64::MAX, which
            // the parent reports.
            records.extend_from_slice(if op.len() == 8 { op } else { &[0xff; 8] });
        }
        // One write per batch; a kill may still tear it, and the parent
        // drops a torn last record.
        log.write_all(&records)?;
        thread::sleep(slow);
        Ok(())
    };
    let say = |line: String| {
        let mut out = io::stdout().lock();
        // The parent is gone when its pipe is: stop.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            std::process::exit(1);
        }
    };
    let options = JournalOptions::new()
        .name("crash")
        .durability(durability)
        .flush_interval(flush)
        .retry_interval(Duration::from_millis(10));
    say("starting".into());
    let journal = Journal::start(FileDevice::open(ring).unwrap(), options, perform).unwrap();
    say("running".into());
    let born = Instant::now();
    thread::scope(|s| {
        for t in 0..CHILD_THREADS {
            let (journal, say) = (&journal, &say);
            s.spawn(move || {
                for i in 0u64.. {
                    let id = run << 40 | t << 32 | i;
                    journal.push(&id.to_le_bytes()).unwrap();
                    say(format!("acked {id}"));
                    // Never outlive a parent that failed to kill us.
                    if born.elapsed() > Duration::from_secs(20) {
                        std::process::exit(2);
                    }
                }
            });
        }
    });
    unreachable!("the pushing threads never end")
}

/// A child process, killed and reaped when dropped (even if the test
/// fails).
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = reap_within(&mut self.0, Duration::from_secs(10));
    }
}

/// Waits up to `limit` for `child` to exit; whether it did. (A killed
/// child exits at once unless it is stuck in the kernel.)
pub(crate) fn reap_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !matches!(child.try_wait(), Ok(Some(_))) {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

/// What the thread reading a child's stderr collected, once the child is
/// gone (it ends at the pipe's end); a note if it has not ended in 10 s.
pub(crate) fn stderr_of(reader: thread::JoinHandle<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reader.is_finished() {
        if Instant::now() > deadline {
            return "(its stderr did not end within 10 s)".into();
        }
        thread::sleep(Duration::from_millis(5));
    }
    reader
        .join()
        .unwrap_or_else(|_| "(the stderr reader panicked)".into())
}

pub(crate) fn split_id(id: u64) -> (u64, u64, u64) {
    (id >> 40, (id >> 32) & 0xff, id & 0xffff_ffff)
}
