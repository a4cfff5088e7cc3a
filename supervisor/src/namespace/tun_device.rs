//! The TUN device `wg0`: how it is created, and the interface the data plane reads
//! and writes it through ([`TunIo`], faked in the data plane's tests).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

pub const DEFAULT_MTU: u16 = 1420;
/// The tunnel device's name inside the private namespace.
pub const TUN_NAME: &str = "wg0";

/// The inner side: a TUN device (or a fake in tests).
pub trait TunIo: Send + Sync {
    /// Whether frames carry a virtio-net header (IFF_VNET_HDR with offloads on): a
    /// read may then be a superpacket, and a write may be one (see [`crate::dataplane::offload`]).
    fn offload(&self) -> bool {
        false
    }
    /// A descriptor that polls readable while a frame may be queued (the data plane
    /// waits for it and the host socket in one `poll`).
    fn readable(&self) -> BorrowedFd<'_>;
    /// Read a frame if one is queued, else fail with `WouldBlock`.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write one frame.
    fn send(&self, frame: &[u8]) -> io::Result<()>;
}

// The device is non-blocking (see `create_tun`): the data plane polls it together
// with the host socket and reads until it is empty.
impl TunIo for tun_rs::SyncDevice {
    fn offload(&self) -> bool {
        self.tcp_gso()
    }
    fn readable(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        tun_rs::SyncDevice::recv(self, buf)
    }
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        tun_rs::SyncDevice::send(self, frame).map(drop)
    }
}

/// The TUN device `wg0`, with TSO/USO offloads (IFF_VNET_HDR) where the kernel has
/// them, non-blocking.
pub(crate) fn create_tun(mtu: u16) -> io::Result<tun_rs::SyncDevice> {
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
            .name(TUN_NAME)
            .mtu(mtu)
            .offload(offload)
            .build_sync()
    };
    let tun = build(true).or_else(|_| build(false))?;
    tun.set_nonblocking(true)?;
    Ok(tun)
}
