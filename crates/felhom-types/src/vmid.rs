//! [`Vmid`]: a Proxmox VE guest id, `100..=999_999_999` (PVE's `pve-vmid` format).

use std::fmt;

/// A Proxmox VE guest id: `100..=999_999_999`. Deserialises from a number and refuses one
/// outside the range.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "u64", into = "u32")]
pub struct Vmid(u32);

/// A number outside PVE's vmid range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmidError {
    /// The number given.
    pub got: u64,
}

impl fmt::Display for VmidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "must be between {} and {}, got {}",
            Vmid::MIN,
            Vmid::MAX,
            self.got
        )
    }
}

impl std::error::Error for VmidError {}

impl Vmid {
    /// The lowest vmid PVE hands out.
    pub const MIN: u32 = 100;
    /// The highest vmid PVE accepts.
    pub const MAX: u32 = 999_999_999;

    /// `n` as a vmid, if it is in `100..=999_999_999`.
    pub fn new(n: u64) -> Result<Vmid, VmidError> {
        match u32::try_from(n) {
            Ok(v) if (Self::MIN..=Self::MAX).contains(&v) => Ok(Vmid(v)),
            _ => Err(VmidError { got: n }),
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u64> for Vmid {
    type Error = VmidError;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        Vmid::new(n)
    }
}

impl TryFrom<u32> for Vmid {
    type Error = VmidError;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Vmid::new(n.into())
    }
}

impl From<Vmid> for u32 {
    fn from(v: Vmid) -> u32 {
        v.0
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_pves() {
        assert_eq!(Vmid::new(100).unwrap().get(), 100);
        assert_eq!(Vmid::new(999_999_999).unwrap().get(), 999_999_999);
        for bad in [0, 99, 1_000_000_000, u64::from(u32::MAX) + 101] {
            assert_eq!(Vmid::new(bad), Err(VmidError { got: bad }));
        }
        assert_eq!(
            Vmid::new(99).unwrap_err().to_string(),
            "must be between 100 and 999999999, got 99"
        );
        assert!(Vmid::try_from(99u32).is_err());
    }

    #[test]
    fn serde_refuses_out_of_range_numbers() {
        let v: Vmid = serde_json::from_str("101").unwrap();
        assert_eq!(v.get(), 101);
        assert_eq!(serde_json::to_string(&v).unwrap(), "101");
        let e = serde_json::from_str::<Vmid>("5").unwrap_err().to_string();
        assert!(
            e.contains("must be between 100 and 999999999, got 5"),
            "{e}"
        );
        assert!(serde_json::from_str::<Vmid>("-1").is_err());
    }
}
