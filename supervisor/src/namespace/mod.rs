//! The session's private network and mount namespace, set up from inside (stages 0
//! and 2 to 4 of the crate's theory of operation): the TUN device (`tun_device`), its
//! addresses and routes (`netsetup`, over rtnetlink in `netlink`), and the private
//! name-resolution files (`isolation`, `resolv_conf`).

#[cfg(target_os = "linux")]
pub mod isolation;
#[cfg(target_os = "linux")]
pub(crate) mod netlink;
pub mod netsetup;
#[cfg(target_os = "linux")]
pub(crate) mod probe;
pub mod resolv_conf;
#[cfg(target_os = "linux")]
pub mod tun_device;
