//! A request rate (`60/min`, `20/s`), as `[source.limits]`/`[target.limits]` name it
//! and the pacer keeps it.

use std::fmt;
use std::time::Duration;

/// A request rate: `count` calls per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const fn per_second(count: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(1),
        }
    }

    pub const fn per_minute(count: u32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(60),
        }
    }

    /// The spacing between two calls at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("invalid rate \"{s}\"; expected \"N/s\" or \"N/min\", e.g. \"60/min\"");
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(bad());
        }
        match unit.trim() {
            "s" => Ok(Rate::per_second(count)),
            "min" => Ok(Rate::per_minute(count)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_secs() {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            s => write!(f, "{} per {s} s", self.count),
        }
    }
}

impl Rate {
    /// True when this rate allows more calls in the same time than `other`.
    pub fn above(&self, other: &Rate) -> bool {
        u128::from(self.count) * other.per.as_millis()
            > u128::from(other.count) * self.per.as_millis()
    }
}
