//! The simulator's clock: a wall-clock epoch fixed at start that advances on tokio time (so a
//! paused test clock drives tasks, uptimes and backup names), and the date formats PVE prints.

use std::time::SystemTime;
use time::macros::format_description;
use time::OffsetDateTime;

/// Wall-clock seconds that advance with `tokio::time`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch0: u64,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock reading `epoch0` now (defaults to the system time).
    pub(crate) fn new(epoch0: Option<u64>) -> Clock {
        let epoch0 = epoch0.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        Clock {
            epoch0,
            start: tokio::time::Instant::now(),
        }
    }

    /// Current epoch seconds.
    pub(crate) fn now(&self) -> u64 {
        self.epoch0 + self.start.elapsed().as_secs()
    }

    /// Current tokio instant (task deadlines compare against it).
    pub(crate) fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }
}

fn datetime(epoch: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(epoch).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYY_MM_DD-HH_MM_SS` as in vzdump archive names (the simulator's local time is UTC).
pub(crate) fn vzdump_timestamp(epoch: u64) -> String {
    datetime(epoch)
        .format(format_description!(
            "[year]_[month]_[day]-[hour]_[minute]_[second]"
        ))
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS`, as vzdump log lines print times.
pub(crate) fn log_timestamp(epoch: u64) -> String {
    datetime(epoch)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

/// IMF-fixdate for the `Expires` header.
pub(crate) fn http_date(epoch: u64) -> String {
    datetime(epoch)
        .format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vzdump_timestamps_are_utc() {
        assert_eq!(vzdump_timestamp(1_735_787_045), "2025_01_02-03_04_05");
        assert_eq!(vzdump_timestamp(0), "1970_01_01-00_00_00");
    }

    #[test]
    fn formats_like_pve() {
        assert_eq!(log_timestamp(1_735_787_045), "2025-01-02 03:04:05");
        assert_eq!(http_date(1_735_787_045), "Thu, 02 Jan 2025 03:04:05 GMT");
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_tokio_time() {
        let c = Clock::new(Some(1000));
        assert_eq!(c.now(), 1000);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert_eq!(c.now(), 1061);
    }
}
