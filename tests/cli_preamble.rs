//! `rws connect --preamble LINE` (repeatable): sent first on every connect
//! and reconnect, ahead of the stdin lines buffered while down. Against
//! `rws serve --echo` as a child process, restarted to force a reconnect.

use common::cli::*;

// The helpers every `tests/cli_*.rs` file shares are in `common::cli`.
mod common;

#[test]
fn preamble_lines_go_first_on_every_connect_in_order() {
    let server = start_echo_server();
    let addr = server.addr().to_owned();
    let mut cmd = rws();
    cmd.args([
        "connect",
        "--mode",
        "stateless",
        "--initial-delay",
        "50ms",
        "--max-delay",
        "100ms",
        "--preamble",
        "auth secret",
        "--preamble",
        r#"{"op":"subscribe"}"#,
        "--json",
        &server.url,
    ]);
    let mut client = Running::connected(cmd);
    client.write_line("before");
    client.wait_for(Pipe::Stdout, "echo of `before`", |l| l == "before");

    drop(server);
    client.wait_event("reconnecting");
    // Read while down: it waits in the buffer, behind the next preamble.
    client.write_line("while-down");
    let _server = RwsServe::start(&addr, &["--echo"]);
    client.wait_event("reconnected");
    client.wait_for(Pipe::Stdout, "echo of `while-down`", |l| l == "while-down");

    client.close_stdin();
    let status = client.finish(TIMEOUT);
    client.assert_exit(status, 0);
    client.assert_stdout(&[
        "auth secret",
        r#"{"op":"subscribe"}"#,
        "before",
        "auth secret",
        r#"{"op":"subscribe"}"#,
        "while-down",
    ]);
}

#[test]
fn preamble_is_listed_in_connect_help() {
    let mut cmd = rws();
    cmd.args(["connect", "--help"]);
    let out = run(cmd, Input::Bytes(Vec::new()));
    assert_exit(&out, 0);
    assert!(out.stdout.contains("--preamble <LINE>"), "{}", out.stdout);
}
