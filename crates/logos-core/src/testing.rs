//! Hooks for the workspace's own integration tests, not part of the embedding API.
//!
//! Tests that must know what this machine gives modules (to expect a cgroup or not) ask here,
//! so the functions behind it stay private to the crate. Never used by the runtime itself.

/// Whether the core can give each module process a cgroup of its own on this machine.
pub fn cgroups_available() -> bool {
    crate::sys::cgroups_available()
}
