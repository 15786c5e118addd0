//! Packing a working directory for `submit`: ignore files, `.git`, symlinks, content-named zips.

use std::path::Path;

use daft::archive::{collect, pack};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn names(root: &Path) -> Vec<String> {
    collect(root).unwrap().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn honours_gitignore_and_daftignore_and_skips_git() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "main.py", "print(1)");
    write(r, "pkg/util.py", "x = 1");
    write(r, ".gitignore", "*.log\nbuild/\n");
    write(r, ".daftignore", "data/\nsecret.txt\n");
    write(r, "run.log", "noise");
    write(r, "build/out.bin", "junk");
    write(r, "data/big.csv", "1,2,3");
    write(r, "secret.txt", "token");
    write(r, ".git/HEAD", "ref: refs/heads/main");
    write(r, ".env.example", "A=1");
    assert_eq!(
        names(r),
        [
            ".daftignore",
            ".env.example",
            ".gitignore",
            "main.py",
            "pkg/util.py"
        ]
    );
}

#[test]
fn same_content_same_name_and_one_change_another() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("w");
    write(&r, "a.py", "a");
    write(&r, "b/c.txt", &"c".repeat(10_000));
    let out = d.path().join("out");
    let a1 = pack(&r, &out).unwrap();
    // Timestamps do not matter, content does.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&r, "a.py", "a");
    let a2 = pack(&r, &out).unwrap();
    assert_eq!(a1.hash, a2.hash);
    assert_eq!((a1.files, a1.bytes), (2, 10_001));
    write(&r, "a.py", "changed");
    let a3 = pack(&r, &out).unwrap();
    assert_ne!(a1.hash, a3.hash);
    // The zip is removed when the archive is dropped.
    let p = a3.path.clone();
    drop(a3);
    assert!(!p.exists());
}

#[cfg(unix)]
#[test]
fn symlink_inside_is_followed_and_outside_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("w");
    write(&r, "real/data.txt", "inside");
    std::os::unix::fs::symlink(r.join("real/data.txt"), r.join("link.txt")).unwrap();
    assert_eq!(names(&r), ["link.txt", "real/data.txt"]);
    write(d.path(), "outside.txt", "secret");
    std::os::unix::fs::symlink(d.path().join("outside.txt"), r.join("escape.txt")).unwrap();
    let err = collect(&r).unwrap_err().to_string();
    assert!(
        err.contains("escape.txt") && err.contains("outside the working directory"),
        "{err}"
    );
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = collect(Path::new("/definitely/not/here"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/definitely/not/here") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn unpacks_with_pythons_zipfile_intact() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("w");
    for i in 0..50 {
        write(
            &r,
            &format!("d{}/f{i}.txt", i % 5),
            &format!("{i}").repeat(i * 40),
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        write(&r, "run.sh", "#!/bin/sh\necho hi\n");
        std::fs::set_permissions(r.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let a = pack(&r, d.path()).unwrap();
    let dest = d.path().join("out");
    std::fs::create_dir_all(&dest).unwrap();
    let unpack = d.path().join("jobs.py");
    std::fs::write(&unpack, daft::templates::JOBS).unwrap();
    let o = std::process::Command::new("python3")
        .arg(&unpack)
        .arg("unpack")
        .arg(&a.path)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for i in 0..50 {
        let rel = format!("d{}/f{i}.txt", i % 5);
        assert_eq!(
            std::fs::read_to_string(dest.join(&rel)).unwrap(),
            std::fs::read_to_string(r.join(&rel)).unwrap()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dest.join("run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }
}
