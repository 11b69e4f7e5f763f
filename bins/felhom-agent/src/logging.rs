//! Logging for the daemon: journald when systemd connected stderr to the journal
//! (`JOURNAL_STREAM` set), else stderr as text or JSON lines; the level from `log.level`, with
//! the HTTP/TLS libraries held at `info` so a debug log stays about the agent.

use std::ffi::OsStr;
use std::io::IsTerminal;

use felhom_config::{LogConfig, LogFormat, LogLevel};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The systemd journal, with structured fields.
    Journald,
    /// Standard error, in the configured format.
    Stderr(LogFormat),
}

/// Journald when systemd says stderr is the journal (`JOURNAL_STREAM`, set by systemd for
/// services whose output goes there), stderr otherwise.
pub fn choose_sink(journal_stream: Option<&OsStr>, format: LogFormat) -> Sink {
    match journal_stream {
        Some(v) if !v.is_empty() => Sink::Journald,
        _ => Sink::Stderr(format),
    }
}

/// The filter for `level`: that level for everything, but the libraries under us (HTTP, TLS)
/// no more verbose than `info` — their debug output is about sockets, not the agent.
pub fn filter_directives(level: LogLevel) -> String {
    let libs = if level > LogLevel::Info {
        LogLevel::Info
    } else {
        level
    };
    let mut out = level.as_str().to_owned();
    for lib in [
        "hyper",
        "hyper_util",
        "rustls",
        "tokio_rustls",
        "hyper_rustls",
    ] {
        out.push_str(&format!(",{lib}={}", libs.as_str()));
    }
    out
}

/// The filter for `level` ([`filter_directives`]): a plain target filter. `EnvFilter` would
/// parse the same directives, but its regex engine for span-field matching (which the daemon
/// never uses: the directives are ours, not `RUST_LOG`) costs the binary several hundred KiB
/// of code (issue 14: binary size and RSS).
pub fn filter(level: LogLevel) -> Targets {
    filter_directives(level)
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(level_filter(level)))
}

fn level_filter(level: LogLevel) -> tracing_subscriber::filter::LevelFilter {
    use tracing_subscriber::filter::LevelFilter;
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Installs the global subscriber for `log` and returns where lines go. If the journal socket
/// cannot be opened, logs go to stderr and a warning says so.
pub fn init(log: &LogConfig) -> Sink {
    let journal_stream = std::env::var_os("JOURNAL_STREAM");
    let wanted = choose_sink(journal_stream.as_deref(), log.format);
    let filter = filter(log.level);
    let (journald, sink, journald_error) = match wanted {
        Sink::Journald => match tracing_journald::layer() {
            Ok(layer) => (
                Some(layer.with_syslog_identifier("felhom-agent".to_owned())),
                Sink::Journald,
                None,
            ),
            Err(e) => (None, Sink::Stderr(log.format), Some(e)),
        },
        other => (None, other, None),
    };
    let ansi = std::io::stderr().is_terminal();
    let text = matches!(sink, Sink::Stderr(LogFormat::Text)).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
    });
    let json = matches!(sink, Sink::Stderr(LogFormat::Json)).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(text)
        .with(json)
        .try_init();
    if let Err(e) = installed {
        eprintln!("felhom-agent: logging was already set up: {e}");
    }
    if let Some(e) = journald_error {
        tracing::warn!(error = %e, "JOURNAL_STREAM is set but the journal socket cannot be opened: logging to stderr");
    }
    sink
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_only_when_systemd_says_so() {
        assert_eq!(
            choose_sink(Some(OsStr::new("8:12345")), LogFormat::Text),
            Sink::Journald
        );
        assert_eq!(
            choose_sink(None, LogFormat::Json),
            Sink::Stderr(LogFormat::Json)
        );
        assert_eq!(
            choose_sink(Some(OsStr::new("")), LogFormat::Text),
            Sink::Stderr(LogFormat::Text)
        );
    }

    #[test]
    fn libraries_stay_at_info_or_quieter() {
        assert_eq!(
            filter_directives(LogLevel::Debug),
            "debug,hyper=info,hyper_util=info,rustls=info,tokio_rustls=info,hyper_rustls=info"
        );
        assert_eq!(
            filter_directives(LogLevel::Warn),
            "warn,hyper=warn,hyper_util=warn,rustls=warn,tokio_rustls=warn,hyper_rustls=warn"
        );
        for level in [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ] {
            assert!(filter_directives(level).parse::<Targets>().is_ok());
        }
    }

    #[test]
    fn the_filter_holds_the_libraries_at_info_and_lets_the_agent_through() {
        use tracing::Level;
        let f = filter(LogLevel::Debug);
        assert!(f.would_enable("felhom_agent::daemon", &Level::DEBUG));
        assert!(f.would_enable("felhom_hub::heartbeat", &Level::DEBUG));
        assert!(!f.would_enable("felhom_hub::heartbeat", &Level::TRACE));
        for lib in [
            "hyper",
            "hyper_util::client::legacy::pool",
            "rustls::conn",
            "tokio_rustls",
            "hyper_rustls",
        ] {
            assert!(f.would_enable(lib, &Level::INFO), "{lib}");
            assert!(!f.would_enable(lib, &Level::DEBUG), "{lib}");
        }
        let f = filter(LogLevel::Warn);
        assert!(!f.would_enable("felhom_agent::daemon", &Level::INFO));
        assert!(f.would_enable("felhom_agent::daemon", &Level::WARN));
        assert!(!f.would_enable("rustls::conn", &Level::INFO));
    }
}
