//! The one log capture of the tests: everything tracing (and the `log` facade, which rustls
//! uses) emits at any level, filed under the thread that emitted it.
//!
//! One process-wide subscriber, installed on first use. (A scoped `set_default` subscriber per
//! test would be simpler, but tracing caches each call site's interest globally, and a call
//! site first reached by a test without a subscriber can stay switched off for one that has
//! one: the capture then silently misses events.) A test finds its own lines either by thread
//! ([`LogCapture::text`], for tests on tokio's current-thread runtime, where the client's and
//! the simulator's tasks log on the test's thread too) or by a marker unique to it, such as its
//! simulator's URL ([`LogCapture::lines_with`]).

use std::io::Write;
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::thread::ThreadId;

type Events = Mutex<Vec<(ThreadId, String)>>;

static EVENTS: OnceLock<Events> = OnceLock::new();

/// A view of the captured events from the moment of [`LogCapture::start`].
#[derive(Debug)]
pub struct LogCapture {
    thread: ThreadId,
    from: usize,
}

impl LogCapture {
    /// Installs the subscriber if this test binary has none yet, and starts a view on this
    /// thread.
    pub fn start() -> LogCapture {
        let from = lock(events()).len();
        // A call site that registered concurrently with the install may have cached "off".
        tracing::callsite::rebuild_interest_cache();
        LogCapture {
            thread: std::thread::current().id(),
            from,
        }
    }

    /// The events of this thread captured since [`LogCapture::start`], one or more lines each.
    pub fn text(&self) -> String {
        lock(events())[self.from..]
            .iter()
            .filter(|(t, _)| *t == self.thread)
            .map(|(_, e)| e.as_str())
            .collect()
    }

    /// Everything every thread logged since the subscriber was installed: for asserting that
    /// something (a secret) never reached any log of this test binary.
    pub fn all_text(&self) -> String {
        lock(events()).iter().map(|(_, e)| e.as_str()).collect()
    }

    /// The captured lines of any thread, since the subscriber was installed, that contain
    /// `marker`.
    pub fn lines_with(&self, marker: &str) -> Vec<String> {
        self.all_text()
            .lines()
            .filter(|l| l.contains(marker))
            .map(str::to_owned)
            .collect()
    }
}

/// The captured events, installing the subscriber on first use.
fn events() -> &'static Events {
    static INSTALL: Once = Once::new();
    let events = EVENTS.get_or_init(|| Mutex::new(Vec::new()));
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_target(true)
            .with_writer(|| EventWriter {
                thread: std::thread::current().id(),
                buf: Vec::new(),
            })
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        tracing_log::LogTracer::init().expect("no other logger in this test binary");
    });
    events
}

/// A test that panicked while logging leaves plain data behind: keep using it.
fn lock(events: &Events) -> MutexGuard<'_, Vec<(ThreadId, String)>> {
    events.lock().unwrap_or_else(|e| e.into_inner())
}

/// Collects one formatted event and files it under the emitting thread when dropped.
struct EventWriter {
    thread: ThreadId,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if let Some(events) = EVENTS.get() {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            lock(events).push((self.thread, text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_sees_its_own_thread_and_finds_markers_on_any() {
        let logs = LogCapture::start();
        tracing::warn!("testkit-marker-1 from the test thread");
        std::thread::spawn(|| tracing::info!("testkit-marker-2 from another thread"))
            .join()
            .unwrap();
        let mine = logs.text();
        assert!(
            mine.contains("WARN") && mine.contains("testkit-marker-1"),
            "{mine}"
        );
        assert!(!mine.contains("testkit-marker-2"), "{mine}");
        assert_eq!(logs.lines_with("testkit-marker-2").len(), 1);
        assert!(logs.all_text().contains("testkit-marker-1"));
    }
}
