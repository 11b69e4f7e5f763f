//! [`VmidRange`]: an inclusive range of guest ids reserved for one purpose (the restore tests'
//! scratch guests), written `"FIRST-LAST"` (`"9000-9099"`).

use std::fmt;
use std::str::FromStr;

use crate::vmid::Vmid;

/// Most vmids one range may hold: a scratch range is a handful of slots, and a bound keeps a
/// typo (`"9000-99999"`) from reserving a large part of the id space.
pub const MAX_RANGE_LEN: u32 = 1000;

/// An inclusive range of vmids, `first <= last`, both valid vmids, at most [`MAX_RANGE_LEN`]
/// long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmidRange {
    first: Vmid,
    last: Vmid,
}

/// Why a text is not a vmid range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmidRangeError {
    /// Not `FIRST-LAST` with two whole numbers.
    Syntax {
        /// The text (at most 64 characters of it).
        got: String,
    },
    /// An end is outside PVE's vmid range.
    Vmid(crate::VmidError),
    /// `first` is above `last`.
    Reversed {
        /// The first.
        first: u32,
        /// The last.
        last: u32,
    },
    /// More than [`MAX_RANGE_LEN`] vmids.
    TooLong {
        /// How many it would hold.
        len: u64,
    },
}

impl fmt::Display for VmidRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { got } => {
                write!(
                    f,
                    "expected \"FIRST-LAST\" (e.g. \"9000-9099\"), got {got:?}"
                )
            }
            Self::Vmid(e) => write!(f, "each end {e}"),
            Self::Reversed { first, last } => {
                write!(f, "first {first} is above last {last}")
            }
            Self::TooLong { len } => {
                write!(f, "holds {len} vmids, at most {MAX_RANGE_LEN} are allowed")
            }
        }
    }
}

impl std::error::Error for VmidRangeError {}

impl VmidRange {
    /// `first..=last`, checked.
    pub fn new(first: u64, last: u64) -> Result<Self, VmidRangeError> {
        let (f, l) = (
            Vmid::new(first).map_err(VmidRangeError::Vmid)?,
            Vmid::new(last).map_err(VmidRangeError::Vmid)?,
        );
        if f > l {
            return Err(VmidRangeError::Reversed {
                first: f.get(),
                last: l.get(),
            });
        }
        let len = u64::from(l.get() - f.get()) + 1;
        if len > u64::from(MAX_RANGE_LEN) {
            return Err(VmidRangeError::TooLong { len });
        }
        Ok(Self { first: f, last: l })
    }

    /// The lowest vmid.
    pub fn first(self) -> u32 {
        self.first.get()
    }

    /// The highest vmid.
    pub fn last(self) -> u32 {
        self.last.get()
    }

    /// Whether `vmid` is inside.
    pub fn contains(self, vmid: u32) -> bool {
        (self.first()..=self.last()).contains(&vmid)
    }

    /// Every vmid, ascending.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        self.first()..=self.last()
    }

    /// How many vmids it holds.
    pub fn len(self) -> u32 {
        self.last() - self.first() + 1
    }

    /// Never empty (`first <= last`); for clippy's sake.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl FromStr for VmidRange {
    type Err = VmidRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || VmidRangeError::Syntax {
            got: s.chars().take(64).collect(),
        };
        let (a, b) = s.trim().split_once('-').ok_or_else(syntax)?;
        let num = |t: &str| {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            t.parse::<u64>().map_err(|_| syntax())
        };
        Self::new(num(a)?, num(b)?)
    }
}

impl fmt::Display for VmidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_say_why() {
        let r: VmidRange = "9000-9099".parse().unwrap();
        assert_eq!((r.first(), r.last(), r.len()), (9000, 9099, 100));
        assert!(r.contains(9000) && r.contains(9099));
        assert!(!r.contains(8999) && !r.contains(9100));
        assert_eq!(r.to_string(), "9000-9099");
        assert_eq!(" 9000 - 9000 ".parse::<VmidRange>().unwrap().len(), 1);
        for bad in [
            "9000",
            "9000-",
            "-9099",
            "a-b",
            "9000-9099-1",
            "+9000-9001",
            "",
        ] {
            assert!(
                matches!(bad.parse::<VmidRange>(), Err(VmidRangeError::Syntax { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            "50-150".parse::<VmidRange>(),
            Err(VmidRangeError::Vmid(_))
        ));
        assert_eq!(
            "9099-9000".parse::<VmidRange>(),
            Err(VmidRangeError::Reversed {
                first: 9099,
                last: 9000
            })
        );
        let e = "9000-10000".parse::<VmidRange>().unwrap_err();
        assert_eq!(e, VmidRangeError::TooLong { len: 1001 });
        assert!(e.to_string().contains("1001"), "{e}");
    }
}
