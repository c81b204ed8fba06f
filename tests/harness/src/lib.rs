//! Placeholder; see issue.
