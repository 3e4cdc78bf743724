//! Invalid settings: exit code, one line naming the setting, no ready file left behind.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

fn run(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::command(dir.path(), env, args).spawn().unwrap();
    let status = common::wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    (status.code(), stderr, dir.path().join("ready").exists())
}

#[test]
fn invalid_settings_exit_2_naming_the_setting() {
    let cases = [
        ("PORT", "abc"),
        ("DRAIN", "-1"),
        ("SHUTDOWN_TIMEOUT", "later"),
        ("MESSAGE", "hello {user}"),
        ("LOG_FORMAT", "yaml"),
        ("POD_IP", "300.1.1.1"),
        ("RUST_LOG", "testpage=loud"),
        ("RUST_LOG", "["),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONNECTIONS", "3"),
        ("MESSAGE", ""),
        ("INTERFACE", ""),
        ("CONTENT_TYPE", ""),
        ("CONTENT_TYPE", "text/html\u{7}"),
        ("NEWLINE", "sometimes"),
        ("FAIL_AFTER", "1e3"),
        ("FAIL_AFTER", "2.5"),
        ("IDLE_TIMEOUT", "0"),
        ("LATENCY", "1e19"),
    ];
    for (setting, value) in cases {
        let env = [(setting, value)];
        // PORT is only read without --listen, which the harness otherwise passes.
        let (code, stderr, ready) = if setting == "PORT" {
            run_without_listen(&env)
        } else {
            run(&env, &[])
        };
        assert_eq!(code, Some(2), "{setting}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{setting}: one line: {stderr}");
        assert!(stderr.contains(setting), "{setting}: {stderr}");
        assert!(!ready, "{setting}: no ready file");
    }
}

fn run_without_listen(env: &[(&str, &str)]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_testpage"))
        .env_clear()
        .envs(env.iter().copied())
        .env("READY_FILE", dir.path().join("ready"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
        dir.path().join("ready").exists(),
    )
}

#[test]
fn unwritable_ready_file_directory_exits_1() {
    let (code, stderr, _) = run(&[("READY_FILE", "/proc/no-such-dir/ready")], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("READY_FILE"), "{stderr}");
    assert!(!std::path::Path::new("/proc/no-such-dir/ready").exists());
}

#[test]
fn port_in_use_exits_1_and_leaves_no_ready_file() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr, ready) = run(&[], &["--listen", &addr]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!ready);
}

#[test]
fn a_value_that_is_not_utf8_is_named_in_one_line() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::command(dir.path(), &[], &[]);
    cmd.env("VERSION", std::ffi::OsStr::from_bytes(b"v\xff1"));
    let mut child = cmd.spawn().unwrap();
    let status = common::wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("VERSION") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

#[test]
fn what_else_sits_at_the_ready_file_path_is_left_alone() {
    // A device, a stranger's file: exit 1 naming READY_FILE, and the thing is untouched.
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("notes");
    std::fs::write(&foreign, "precious\n").unwrap();
    for path in [std::path::Path::new("/dev/null"), foreign.as_path()] {
        let (code, stderr, _) = run(&[("READY_FILE", path.to_str().unwrap())], &[]);
        assert_eq!(code, Some(1), "{path:?}: {stderr}");
        assert!(stderr.contains("READY_FILE"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "precious\n");
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &meta.file_type()
    ));
}

#[test]
fn a_second_instance_does_not_take_over_the_first_ones_ready_file() {
    let first = common::Server::start(&[("VERSION", "1")]);
    let ready = first.ready_file.to_str().unwrap().to_owned();
    let (code, stderr, _) = run(&[("READY_FILE", &ready)], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&first.child.id().to_string()), "{stderr}");
    assert!(first.ready_file.exists());
    assert_eq!(first.get("/readyz").status, 200);
}
