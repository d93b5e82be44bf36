//! The control socket: `moat run` has a running gate record its session and serve its socket.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed test

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use moat_audit::{AuditLog, Event, ListQuery, SessionEnd, SessionStart};
use moat_gate::control::{Hello, SESSION_SOCKET};
use moat_gate::session_file::{SESSION_FILE, SessionFile, settle};
use moat_gate::{CONTROL_SOCKET, ControlClient, ControlError, Gate, GateConfig, SessionContext};
use moat_policy::Policy;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::support::{Mode, POLICY, Upstream, advisories, raw_unix, start_upstream};

/// A gate serving its control socket (no TCP listener: sessions only).
struct ControlGate {
    upstream: Arc<Upstream>,
    data_dir: tempfile::TempDir,
    audit: AuditLog,
    control: PathBuf,
    policy: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ControlGate {
    async fn start() -> ControlGate {
        let (upstream, base) = start_upstream().await;
        let data_dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&data_dir.path().join("audit.db")).unwrap();
        let mut config = GateConfig::new("http://127.0.0.1:7171", data_dir.path());
        config.upstream.npm = base;
        config.upstream.timeout = Duration::from_secs(5);
        let policy = Policy::from_toml(POLICY).unwrap();
        let revision = policy.revision().to_owned();
        let gate = Gate::new(config, policy, advisories(), HashMap::new(), audit.clone()).unwrap();
        let control = data_dir.path().join(CONTROL_SOCKET);
        let listener = moat_gate::bind_control(&control).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(moat_gate::serve_control(
            listener,
            Arc::new(gate),
            async move {
                let _ = stopped.await;
            },
        ));
        ControlGate {
            upstream,
            data_dir,
            audit,
            control,
            policy: revision,
            stop: Some(stop),
            served,
        }
    }

    async fn client(&self) -> ControlClient {
        ControlClient::connect(&self.control)
            .await
            .unwrap()
            .expect("the gate answers")
    }

    fn events(&self) -> Vec<Event> {
        self.audit
            .list(&ListQuery::default())
            .unwrap()
            .into_iter()
            .map(|stored| stored.event)
            .collect()
    }

    /// Waits (bounded) until the log holds `session`'s end, and returns it.
    async fn end_of(&self, session: &str) -> SessionEnd {
        for _ in 0..200 {
            let end = self.events().into_iter().find_map(|event| match event {
                Event::SessionEnd(end) if end.session == session => Some(end),
                Event::Decision(_) | Event::SessionStart(_) | Event::SessionEnd(_) => None,
            });
            if let Some(end) = end {
                return end;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no session-end for {session}: {:?}", self.events());
    }

    fn session_dir(&self, id: &str) -> PathBuf {
        self.data_dir.path().join("sessions").join(id)
    }
}

fn session(id: &str) -> SessionContext {
    SessionContext {
        id: id.to_owned(),
        agent: "claude".to_owned(),
        operator: "alice".to_owned(),
    }
}

fn start(session: &SessionContext) -> SessionStart {
    SessionStart {
        time: jiff::Timestamp::now(),
        session: session.id.clone(),
        operator: session.operator.clone(),
        agent: session.agent.clone(),
        command: vec!["npm".to_owned(), "install".to_owned()],
        workspace: "/work/ws".to_owned(),
        read_only: Vec::new(),
        backend: "embedded".to_owned(),
        // The client's guess; the gate records its own revision.
        policy: "unknown".to_owned(),
        host: "test-host".to_owned(),
        enforced: vec!["landlock".to_owned()],
        waived: Vec::new(),
    }
}

fn end(session: &SessionContext, exit_code: i32) -> SessionEnd {
    SessionEnd {
        time: jiff::Timestamp::now(),
        session: session.id.clone(),
        exit_code: Some(exit_code),
        signal: None,
        duration_ms: 12,
        user_cpu_ms: 3,
        system_cpu_ms: 4,
        max_rss_kib: 5,
        reason: None,
    }
}

#[tokio::test]
async fn open_serves_the_session_and_close_records_its_end() {
    let gate = ControlGate::start().await;
    let mode = std::fs::metadata(&gate.control).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let mut client = gate.client().await;
    assert_eq!(
        client.hello().await.unwrap(),
        &Hello {
            moat: "gate".to_owned(),
            pid: std::process::id(),
            public_url: "http://127.0.0.1:7171".to_owned(),
            policy: gate.policy.clone(),
            ends_from_session_file: true,
        }
    );
    let s = session("s-ctl-1");
    let with_read_only = SessionStart {
        read_only: vec!["/srv/docs".to_owned()],
        ..start(&s)
    };
    let opened = client.open(&s, with_read_only).await.unwrap();
    assert_eq!(
        opened.socket,
        gate.session_dir("s-ctl-1")
            .join("sandbox")
            .join(SESSION_SOCKET)
    );
    assert_eq!(opened.policy, gate.policy);
    // Only this user may reach the session's socket (the gate made its directories here).
    for dir in [
        gate.session_dir("s-ctl-1"),
        opened.socket.parent().unwrap().to_owned(),
    ] {
        let mode = std::fs::metadata(&dir).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o700,
            "{}",
            dir.display()
        );
    }

    // The socket is the session's: its requests carry the session's identity.
    let blocked = raw_unix(&opened.socket, "GET", "/npm/demo/-/demo-1.1.0.tgz", &[]).await;
    assert_eq!(blocked.status, 403, "{}", blocked.text());
    client.close(end(&s, 7)).await.unwrap();

    assert!(!gate.session_dir("s-ctl-1").exists());
    let events = gate.events();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds.first(), Some(&"session-start"), "{events:?}");
    assert_eq!(kinds.last(), Some(&"session-end"), "{events:?}");
    let Event::SessionStart(recorded) = &events[0] else {
        unreachable!()
    };
    assert_eq!(recorded.policy, gate.policy);
    assert_eq!(recorded.agent, "claude");
    assert_eq!(recorded.command, ["npm", "install"]);
    assert_eq!(recorded.read_only, ["/srv/docs"]);
    assert!(events.iter().any(|event| matches!(event,
        Event::Decision(d) if d.identity == "session:s-ctl-1" && d.action == "block")));
    let Some(Event::SessionEnd(ended)) = events.last() else {
        unreachable!()
    };
    assert_eq!(ended.exit_code, Some(7));
    assert_eq!(ended.reason, None);
}

/// A session's repeated answers are counted (one full record, then a tally), and the tally is
/// on record before the session's end: nothing of a session comes after its end.
#[tokio::test]
async fn a_session_s_repeated_answers_are_tallied_before_its_end() {
    let gate = ControlGate::start().await;
    let mut client = gate.client().await;
    let s = session("s-ctl-repeats");
    let opened = client.open(&s, start(&s)).await.unwrap();
    for _ in 0..3 {
        let blocked = raw_unix(&opened.socket, "GET", "/npm/demo/-/demo-1.1.0.tgz", &[]).await;
        assert_eq!(blocked.status, 403, "{}", blocked.text());
    }
    client.close(end(&s, 0)).await.unwrap();

    let stored = gate.audit.list(&ListQuery::default()).unwrap();
    let kinds: Vec<&str> = stored.iter().map(|e| e.event.kind()).collect();
    assert_eq!(
        kinds,
        ["session-start", "decision", "decision", "session-end"],
        "{stored:?}"
    );
    let (Event::Decision(first), Event::Decision(tally)) = (&stored[1].event, &stored[2].event)
    else {
        unreachable!()
    };
    assert_eq!(
        (first.action.as_str(), first.repeats.as_ref()),
        ("block", None)
    );
    let repeats = tally.repeats.as_ref().expect("the second is a tally");
    assert_eq!((repeats.of, repeats.count), (stored[1].seq, 2));
    assert_eq!(
        (tally.identity.as_str(), tally.version.as_deref()),
        ("session:s-ctl-repeats", Some("1.1.0"))
    );
}

/// `moat run` writes the end into its session file, hands it over and goes on without an
/// answer, while the session still drains (a request in flight: the end is the session's last
/// event). A reader that settles first (`session_file::settle`) waits until the end is on
/// record, and then finds the session's directory, with the file, gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_end_needs_no_answer_and_a_reader_that_settles_sees_it() {
    let gate = ControlGate::start().await;
    let mut client = gate.client().await;
    let s = session("s-ctl-handed");
    let opened = client.open(&s, start(&s)).await.unwrap();
    gate.upstream.set_mode(Mode::Held);
    let in_flight = tokio::spawn(async move {
        raw_unix(&opened.socket, "GET", "/npm/demo", &[])
            .await
            .status
    });
    for _ in 0..400 {
        if gate.upstream.hits_for("/demo") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        gate.upstream.hits_for("/demo"),
        1,
        "the request reached the upstream"
    );

    let handed = end(&s, 9);
    let dir = gate.session_dir("s-ctl-handed");
    write_session_file_with_end(&dir, &s, &handed);
    client.hand_over(handed.clone()).await.unwrap();
    let ended = |gate: &ControlGate| {
        gate.events()
            .into_iter()
            .any(|event| matches!(event, Event::SessionEnd(end) if end.session == s.id))
    };
    assert!(!ended(&gate), "the end waits for the request in flight");
    assert!(dir.join(SESSION_FILE).exists());
    let data_dir = gate.data_dir.path().to_owned();
    let settled = tokio::task::spawn_blocking(move || settle(&data_dir, Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !settled.is_finished(),
        "a reader waits for the handed-over end"
    );

    gate.upstream.release.notify_one();
    assert_eq!(in_flight.await.unwrap(), 200);
    assert_eq!(settled.await.unwrap(), Ok(()));
    assert!(ended(&gate), "{:?}", gate.events());
    assert!(!dir.exists());
    let recorded = gate.end_of("s-ctl-handed").await;
    assert_eq!(
        recorded,
        SessionEnd {
            time: recorded.time,
            ..handed
        }
    );
}

/// What `moat run` writes into the session's directory `dir` before it hands `end` over.
fn write_session_file_with_end(dir: &Path, session: &SessionContext, end: &SessionEnd) {
    SessionFile {
        end: Some(end.clone()),
        ..SessionFile::for_this_process(session, &[], Path::new("/work/ws")).unwrap()
    }
    .write(dir)
    .unwrap();
}

/// `moat run`'s quick end: the end written into the session file, then the process (and its
/// connection) gone without a close. The gate records that end, as handed over.
#[tokio::test]
async fn a_dropped_connection_hands_over_the_end_its_session_file_holds() {
    let gate = ControlGate::start().await;
    let mut client = gate.client().await;
    let s = session("s-ctl-quick");
    client.open(&s, start(&s)).await.unwrap();
    let written = end(&s, 7);
    let dir = gate.session_dir("s-ctl-quick");
    write_session_file_with_end(&dir, &s, &written);
    drop(client);
    let recorded = gate.end_of("s-ctl-quick").await;
    assert_eq!(
        recorded,
        SessionEnd {
            time: recorded.time,
            ..written
        }
    );
    for _ in 0..200 {
        if !dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!dir.exists(), "the gate removes the session's directory");
}

#[tokio::test]
async fn a_dropped_connection_ends_the_session() {
    let gate = ControlGate::start().await;
    let mut client = gate.client().await;
    let s = session("s-ctl-crash");
    let opened = client.open(&s, start(&s)).await.unwrap();
    assert!(opened.socket.exists());
    drop(client); // `moat run` crashed
    let ended = gate.end_of("s-ctl-crash").await;
    assert_eq!(ended.reason.as_deref(), Some("moat run disconnected"));
    assert_eq!(ended.exit_code, None);
    for _ in 0..200 {
        if !gate.session_dir("s-ctl-crash").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!gate.session_dir("s-ctl-crash").exists());
    // The id is free again.
    let mut again = gate.client().await;
    again.open(&s, start(&s)).await.unwrap();
    again.close(end(&s, 0)).await.unwrap();
}

#[tokio::test]
async fn gate_shutdown_ends_open_sessions_and_removes_the_control_socket() {
    let mut gate = ControlGate::start().await;
    let mut client = gate.client().await;
    let s = session("s-ctl-shutdown");
    client.open(&s, start(&s)).await.unwrap();
    let _ = gate.stop.take().unwrap().send(());
    let recorded = tokio::time::timeout(Duration::from_secs(10), client.ended_by_gate())
        .await
        .expect("the client learns that the gate ended the session");
    assert!(recorded, "the gate says that it recorded the end");
    (&mut gate.served).await.unwrap().unwrap();
    let ended = gate.end_of("s-ctl-shutdown").await;
    assert_eq!(ended.reason.as_deref(), Some("gate stopped"));
    assert!(!gate.control.exists());
    assert!(
        ControlClient::connect(&gate.control)
            .await
            .unwrap()
            .is_none()
    );
    // The session's close comes too late and says so.
    assert!(client.close(end(&s, 0)).await.is_err());
}

#[tokio::test]
async fn bad_opens_are_refused_and_record_nothing() {
    let gate = ControlGate::start().await;
    let mut bad = gate.client().await;
    let traversal = session("../../etc");
    let error = bad.open(&traversal, start(&traversal)).await.unwrap_err();
    assert!(
        matches!(&error, ControlError::Refused(m) if m.contains("invalid session id")),
        "{error}"
    );

    // A workspace or read-only path that would show the agent the gate's own state (its data
    // directory, audit log or key), whatever `moat run` was configured with, however spelled.
    let data_dir = gate.data_dir.path().canonicalize().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("link-to-parent");
    std::os::unix::fs::symlink(data_dir.parent().unwrap(), &link).unwrap();
    let exposing_paths = [
        data_dir.parent().unwrap().to_path_buf(),
        data_dir.join("sessions"),
        data_dir.join(".."),
        link,
    ];
    let plain = elsewhere.path().to_string_lossy().into_owned();
    for shown in &exposing_paths {
        let shown = shown.to_string_lossy().into_owned();
        let s = session("s-ctl-state");
        let as_workspace = SessionStart {
            workspace: shown.clone(),
            ..start(&s)
        };
        let as_read_only = SessionStart {
            workspace: plain.clone(),
            read_only: vec![plain.clone(), shown.clone()],
            ..start(&s)
        };
        for (refused, label) in [
            (as_workspace, "the workspace"),
            (as_read_only, "the read-only path"),
        ] {
            let mut exposing = gate.client().await;
            let error = exposing.open(&s, refused).await.unwrap_err();
            let expected =
                format!("{label} {shown} would show the agent this gate's data directory");
            assert!(
                matches!(&error, ControlError::Refused(m) if m.contains(&expected)),
                "{shown}: {error}"
            );
        }
    }
    // A spelling the gate cannot resolve is refused unless plain: compared as given, `..` could
    // hide where it leads.
    let s = session("s-ctl-unplain");
    let mut unplain = gate.client().await;
    let refused = SessionStart {
        read_only: vec!["/nonexistent/../etc".to_owned()],
        ..start(&s)
    };
    let error = unplain.open(&s, refused).await.unwrap_err();
    assert!(
        matches!(&error, ControlError::Refused(m) if m.contains("cannot be checked")),
        "{error}"
    );

    let s = session("s-ctl-dup");
    let mut first = gate.client().await;
    first.open(&s, start(&s)).await.unwrap();
    let mut second = gate.client().await;
    let error = second.open(&s, start(&s)).await.unwrap_err();
    assert!(error.to_string().contains("already open"), "{error}");
    first.close(end(&s, 0)).await.unwrap();

    let starts = gate
        .events()
        .iter()
        .filter(|e| e.kind() == "session-start")
        .count();
    assert_eq!(starts, 1);
}

#[tokio::test]
async fn close_before_open_and_garbage_are_refused() {
    let gate = ControlGate::start().await;
    let close = serde_json::json!({ "op": "close", "end": end(&session("s-x"), 0) });
    for line in [format!("{close}\n"), "this is not json\n".to_owned()] {
        let stream = tokio::net::UnixStream::connect(&gate.control)
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = tokio::io::BufReader::new(read);
        let mut hello = String::new();
        read.read_line(&mut hello).await.unwrap();
        assert!(hello.contains("\"moat\":\"gate\""), "{hello}");
        write.write_all(line.as_bytes()).await.unwrap();
        let mut reply = String::new();
        read.read_line(&mut reply).await.unwrap();
        assert!(reply.contains("\"ok\":false"), "{line} → {reply}");
    }
    assert!(gate.events().is_empty());
}

#[tokio::test]
async fn a_stale_control_socket_is_replaced_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONTROL_SOCKET);
    // A gate that died: the file remains, nothing answers.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(ControlClient::connect(&path).await.unwrap().is_none());
    let live = moat_gate::bind_control(&path).unwrap();
    assert!(matches!(
        moat_gate::bind_control(&path),
        Err(ControlError::InUse(p)) if p == path
    ));
    drop(live);
    assert!(
        ControlClient::connect(Path::new("/nonexistent/gate.ctl"))
            .await
            .unwrap()
            .is_none()
    );
}
