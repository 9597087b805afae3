//! The metrics endpoint when the process runs out of file descriptors: `accept` fails
//! with EMFILE while a connection waits, and the loop must pause instead of spinning on
//! it, then serve that connection once descriptors are free again.
//!
//! A test binary of its own: it lowers RLIMIT_NOFILE for the whole process.

use std::time::Duration;

use dmarc_ingest::metrics::{serve, Metrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn set_soft_nofile(soft: libc::rlim_t) -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let old = limit;
    limit.rlim_cur = soft.min(limit.rlim_max);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    old
}

#[tokio::test]
async fn accept_loop_pauses_when_out_of_descriptors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Metrics::new(), async {
        let _ = stop_rx.await;
    }));

    // Take every descriptor but one, then use that one for the client: the kernel
    // completes the connection, and the server's accept() gets EMFILE.
    let old = set_soft_nofile(256);
    let mut fillers = Vec::new();
    while fillers.len() < 10_000 {
        match std::fs::File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    fillers.pop();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();

    // A spinning loop burns a core for the whole wait; a pausing one next to nothing.
    let wait = Duration::from_millis(800);
    let before = cpu_time();
    tokio::time::sleep(wait).await;
    let used = cpu_time() - before;
    let mut early = [0u8; 64];
    let answered = tokio::time::timeout(Duration::from_millis(1), client.read(&mut early)).await;

    drop(fillers);
    set_soft_nofile(old.rlim_cur);
    assert!(
        used < wait / 4,
        "the accept loop used {used:?} of CPU in {wait:?}"
    );
    assert!(answered.is_err(), "answered while out of descriptors");

    // Descriptors are back: the waiting connection is served after the pause.
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut response))
        .await
        .expect("served once descriptors are free")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap();
}
