//! `sbr create` on devices that already hold something, and on a ring of
//! another sector size.

use std::path::Path;
use std::process::Command;

mod common;

use common::{dir, run, stderr as err, stdout as out};

fn file(d: &Path, name: &str, bytes: &[u8]) -> String {
    let p = d.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// Refused, one error line naming `what`, the file unchanged.
fn assert_refused(path: &str, what: &str) {
    let before = std::fs::read(path).unwrap();
    let o = run(&["create", path], b"");
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        err(&o),
        format!(
            "error: {path}: refusing to initialise a ring: it holds {what} (pass --force to \
             overwrite it, or --erase to zero the whole device first)\n"
        )
    );
    assert!(std::fs::read(path).unwrap() == before, "{path} was changed");
}

#[test]
fn create_refuses_data_unless_forced() {
    let d = dir();
    // Random bytes: 1 MiB from a fixed generator.
    let mut x = 0x9e3779b97f4a7c15u64;
    let random: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let r = file(d.path(), "random.img", &random);
    assert_refused(&r, "non-zero data at sector 0");
    let o = run(&["create", &r, "--force"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with(&format!("created a ring on {r}")));

    let mut late = vec![0u8; 64 << 10];
    late[5000] = 1;
    let l = file(d.path(), "late.img", &late);
    assert_refused(&l, "non-zero data at sector 9");

    let mut ext = vec![0u8; 64 << 10];
    ext[1080..1082].copy_from_slice(&[0x53, 0xef]);
    let e = file(d.path(), "ext.img", &ext);
    assert_refused(&e, "an ext2/3/4 filesystem");
    let mut gpt = vec![0u8; 64 << 10];
    gpt[510..512].copy_from_slice(&[0x55, 0xaa]);
    gpt[512..520].copy_from_slice(b"EFI PART");
    let g = file(d.path(), "gpt.img", &gpt);
    assert_refused(&g, "a GPT partition table");
    // --erase implies --force.
    let o = run(&["create", &g, "--erase"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    // What `sbr erase` leaves, and a create cut short before the
    // signature, are fine.
    let p = file(d.path(), "pattern.img", &vec![0u8; 64 << 10]);
    assert_eq!(
        run(&["erase", &p, "--pattern", "wiped "], b"")
            .status
            .code(),
        Some(0)
    );
    let o = run(&["create", &p], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let mut half = std::fs::read(&p).unwrap();
    half[..512].fill(0);
    let h = file(d.path(), "half.img", &half);
    let o = run(&["create", &h], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("created a ring"), "{}", out(&o));
}

/// The signatures real tools write (e2fsprogs' mkfs.ext4, util-linux's
/// mkswap), at the offsets the check expects.
#[test]
fn create_names_real_filesystems_and_swap() {
    let d = dir();
    for (tool, args, what) in [
        ("mkfs.ext4", &["-q", "-F"][..], "an ext2/3/4 filesystem"),
        ("mkswap", &[][..], "a Linux swap area"),
    ] {
        let path = file(d.path(), &format!("{tool}.img"), &vec![0u8; 8 << 20]);
        let o = Command::new(tool)
            .args(args)
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!("{tool} is needed for this test (e2fsprogs, util-linux): {e}")
            });
        assert!(o.status.success(), "{tool}: {}", err(&o));
        assert_refused(&path, what);
    }
}

#[test]
fn create_warns_about_a_partial_sector_and_counts_sectors_in_words() {
    let d = dir();
    let odd = d.path().join("odd.img").display().to_string();
    let o = run(&["create", &odd, "--size", "1000000"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        err(&o),
        format!(
            "warning: {odd}: --size 1000000 is not a multiple of the 512-byte sector size; \
             the last 64 bytes are not used\n"
        )
    );
    let one = d.path().join("one.img").display().to_string();
    let o = run(&["create", &one, "--size", "2048"], b"");
    assert_eq!(
        out(&o),
        format!("created a ring on {one}: capacity 512 bytes (1 data sector of 512 bytes)\n")
    );
    assert_eq!(err(&o), "");
}

/// A ring made with 4096-byte sectors, used without --sector-size: the
/// error says the state is valid at 4096 and names the option, instead of
/// only "corrupt".
#[test]
fn a_wrong_sector_size_is_recognised_and_the_right_one_suggested() {
    let d = dir();
    let ring = d.path().join("s4k.img").display().to_string();
    let o = run(
        &["create", &ring, "--size", "1MiB", "--sector-size", "4096"],
        b"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let hint = "the ring's state is valid with 4096-byte sectors: pass --sector-size 4096";
    for args in [
        vec!["produce", ring.as_str()],
        vec!["consume", ring.as_str()],
        vec!["suspend", ring.as_str()],
        vec!["diagnostics", ring.as_str()],
    ] {
        let o = run(&args, b"hi\n");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = err(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with(&format!("error: {ring}: ")), "{e}");
        assert!(e.contains("sector 1 byte 8"), "{e}");
        assert!(e.ends_with(&format!("; {hint}\n")), "{args:?}: {e}");
    }
    let o = run(&["diagnostics", &ring], b"");
    assert!(
        out(&o).contains(&format!("\nhint:        {hint}\n")),
        "{}",
        out(&o)
    );
    let o = run(&["create", &ring], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        format!("error: {ring} already holds a ring, but not with 512-byte sectors: {hint}\n")
    );
    // With the right size, all is well.
    let o = run(&["produce", &ring, "--sector-size", "4096"], b"hi\n");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = run(&["consume", &ring, "--sector-size", "4096"], b"");
    assert_eq!(out(&o), "hi\n");
}
