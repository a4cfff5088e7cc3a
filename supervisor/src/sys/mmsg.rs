//! Batched UDP socket calls with the UDP GSO/GRO control messages, straight from libc:
//! rustix has neither `recvmmsg` nor the `UDP_SEGMENT`/`UDP_GRO` control messages.
//!
//! Every function here is safe to call: it takes slices and addresses, builds the
//! C structures on its stack, and returns plain values. The data plane's batching
//! (`crate::dataplane::udp`) decides what goes into a call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `UDP_SEGMENT` and `UDP_GRO` from linux/udp.h (not in the libc crate for glibc).
pub(crate) const UDP_SEGMENT: libc::c_int = 103;
pub(crate) const UDP_GRO: libc::c_int = 104;
/// `sendmmsg`/`recvmmsg` entries per call (on the stack).
pub(crate) const MMSG_MAX: usize = 64;
/// Room for one control message carrying an int (CMSG_SPACE(4) is 24 on 64-bit).
type CmsgBuf = [u64; 4];

/// One message `recvmmsg` returned.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Received {
    /// The sender; `None` for an address family other than IPv4 and IPv6.
    pub from: Option<SocketAddr>,
    pub len: usize,
    /// The kernel cut the message to the slot (`MSG_TRUNC`).
    pub truncated: bool,
    /// The `UDP_GRO` segment size, when the kernel coalesced datagrams.
    pub segment: Option<usize>,
}

/// One `sendmmsg` entry: `buf[start..start + len]` to `to`, a UDP GSO run of
/// `segment`-byte datagrams when `len > segment`, else a single datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing {
    pub to: SocketAddr,
    pub start: usize,
    pub len: usize,
    pub segment: usize,
}

impl Default for Outgoing {
    fn default() -> Outgoing {
        Outgoing {
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
            start: 0,
            len: 0,
            segment: 0,
        }
    }
}

/// With `wait`, block until at least one datagram is queued on `fd` (without it, fail
/// with `WouldBlock` when none is), then take as many messages as fit without waiting
/// again: message `i` into `buf[i * slot..(i + 1) * slot]`, its
/// facts into `out[i]`. At most [`MMSG_MAX`] messages; `EINTR` is retried. Returns
/// how many messages arrived.
pub(crate) fn recvmmsg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    slot: usize,
    out: &mut [Received],
    wait: bool,
) -> io::Result<usize> {
    let flags = if wait {
        libc::MSG_WAITFORONE
    } else {
        libc::MSG_DONTWAIT
    };
    let n = out.len().min(MMSG_MAX).min(buf.len() / slot.max(1));
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut names: [libc::sockaddr_in6; MMSG_MAX] = unsafe { zeroed() };
    let mut cmsgs: [CmsgBuf; MMSG_MAX] = [[0; 4]; MMSG_MAX];
    // SAFETY: as above; every pointer is filled in before the call.
    let mut iovs: [libc::iovec; MMSG_MAX] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { zeroed() };
    for (i, chunk) in buf.chunks_exact_mut(slot.max(1)).take(n).enumerate() {
        iovs[i].iov_base = chunk.as_mut_ptr().cast();
        iovs[i].iov_len = chunk.len();
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_in6).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = cmsgs[i].as_mut_ptr().cast();
        h.msg_controllen = size_of::<CmsgBuf>();
    }
    let got = loop {
        // SAFETY: `msgs[..n]` point at live buffers of the sizes given (names,
        // control buffers, receive slots inside `buf`), all outliving the call.
        let r = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    for i in 0..got {
        let h = &msgs[i].msg_hdr;
        out[i] = Received {
            // SAFETY: the kernel wrote a sockaddr of `msg_namelen` bytes into names[i].
            from: unsafe { from_sockaddr(&names[i], h.msg_namelen) },
            len: msgs[i].msg_len as usize,
            truncated: h.msg_flags & libc::MSG_TRUNC != 0,
            // SAFETY: the control buffer is ours and `msg_controllen` says how much
            // of it the kernel filled.
            segment: unsafe { gro_segment(h) },
        };
    }
    Ok(got)
}

/// One `sendmmsg` of `entries` (at most [`MMSG_MAX`]) cut from `buf`; every `to` in
/// the socket's own family (IPv4 v4-mapped on an IPv6 socket). Returns how many
/// entries went out.
pub(crate) fn sendmmsg(fd: BorrowedFd<'_>, buf: &[u8], entries: &[Outgoing]) -> io::Result<usize> {
    let n = entries.len().min(MMSG_MAX);
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut names: [libc::sockaddr_in6; MMSG_MAX] = unsafe { zeroed() };
    let mut cmsgs: [CmsgBuf; MMSG_MAX] = [[0; 4]; MMSG_MAX];
    // SAFETY: as above; every pointer is filled in before the call.
    let mut iovs: [libc::iovec; MMSG_MAX] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MMSG_MAX] = unsafe { zeroed() };
    for (i, e) in entries[..n].iter().enumerate() {
        let namelen = to_sockaddr(e.to, &mut names[i]);
        iovs[i].iov_base = buf[e.start..e.start + e.len].as_ptr() as *mut libc::c_void;
        iovs[i].iov_len = e.len;
        let h = &mut msgs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_in6).cast();
        h.msg_namelen = namelen;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        if e.len > e.segment {
            // SAFETY: the control buffer is ours, outlives the call, and is large
            // enough and aligned for one cmsghdr carrying a u16.
            unsafe { set_gso_segment(h, &mut cmsgs[i], e.segment as u16) };
        }
    }
    // SAFETY: `msgs[..n]` point at live names, control buffers and the caller's
    // datagram bytes, all outliving the call; the kernel only reads them.
    let r = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Send one datagram to `to` (in the socket's own family, see [`sendmmsg`]).
pub(crate) fn sendto(fd: BorrowedFd<'_>, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut name: libc::sockaddr_in6 = unsafe { zeroed() };
    let namelen = to_sockaddr(to, &mut name);
    // SAFETY: the datagram and the address are live for the call.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            datagram.as_ptr().cast(),
            datagram.len(),
            0,
            (&name as *const libc::sockaddr_in6).cast(),
            namelen,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write `addr` into `out` (which is big enough for either family); returns the
/// address length.
pub(super) fn to_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_in6) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is smaller than sockaddr_in6 and has no alignment
            // requirement beyond it.
            let sin = unsafe { &mut *(out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr.s6_addr = a.ip().octets();
            out.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// # Safety
/// `name` must hold a socket address of `len` bytes written by the kernel.
pub(super) unsafe fn from_sockaddr(
    name: &libc::sockaddr_in6,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    match name.sin6_family as libc::c_int {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in here.
            let sin = unsafe { &*(name as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(name.sin6_addr.s6_addr),
                u16::from_be(name.sin6_port),
                name.sin6_flowinfo,
                name.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The UDP_GRO segment size in a received message's control data, if any.
///
/// # Safety
/// `h` must be a msghdr the kernel filled, whose control buffer is still live.
unsafe fn gro_segment(h: &libc::msghdr) -> Option<usize> {
    if h.msg_controllen == 0 || h.msg_flags & libc::MSG_CTRUNC != 0 {
        return None;
    }
    // SAFETY: the CMSG_* helpers walk the control buffer within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|&s| s > 0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Attach a UDP_SEGMENT control message to `h`.
///
/// # Safety
/// `buf` must stay live (and unmoved) until `h` has been used.
unsafe fn set_gso_segment(h: &mut libc::msghdr, buf: &mut CmsgBuf, segment: u16) {
    h.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    // SAFETY: the buffer holds CMSG_SPACE(2) bytes, so the first header and its data fit.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
    }
}

/// `setsockopt` with an int value.
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt` of an int value.
pub(crate) fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live and sized as the kernel expects.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}
