//! The session's private network and mount namespace, set up from inside.

#[cfg(target_os = "linux")]
pub mod isolation;
#[cfg(target_os = "linux")]
pub(crate) mod netlink;
pub mod netsetup;
pub mod resolv_conf;
#[cfg(target_os = "linux")]
pub mod tun_device;
