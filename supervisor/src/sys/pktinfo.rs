//! One datagram at a time with the local address it was sent to: the `IP_PKTINFO` and
//! `IPV6_PKTINFO` control messages, which rustix does not have.
//!
//! A UDP socket bound to every address (a port published on `0.0.0.0`) answers from
//! whatever source address the routes pick for the client, which on a host with
//! several addresses need not be the one the client sent to; a client that checks
//! (a connected socket, a DNS resolver) then drops the answer. Receiving the
//! destination address with each datagram and naming it as the source of the answer
//! keeps the two the same, as DNS servers do.

use super::mmsg::{from_sockaddr, setsockopt_int, to_sockaddr};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Room for the control messages of one datagram: an IPv4 client of a dual-stack
/// socket comes with both IPV6_PKTINFO (v4-mapped) and IP_PKTINFO (CMSG_SPACE 40 +
/// 32), with room to spare.
type CmsgBuf = [u64; 16];

/// Ask the kernel for each datagram's destination address. For an IPv6 socket both
/// families: IPv4 clients of a dual-stack socket come with `IP_PKTINFO`.
pub(crate) fn enable(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        // An IPv6-only socket has no IPv4 clients to tell about.
        let _ = setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
        Ok(())
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// A datagram read into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Datagram {
    pub len: usize,
    /// The sender; `None` for an address family other than IPv4 and IPv6.
    pub from: Option<SocketAddr>,
    /// The local address it was sent to, when the kernel said (see [`enable`]).
    pub to: Option<IpAddr>,
}

/// Read one datagram (the socket decides whether this blocks).
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Datagram> {
    // SAFETY: all-zero is a valid sockaddr_in6, iovec, msghdr and control buffer.
    let mut name: libc::sockaddr_in6 = unsafe { zeroed() };
    let mut cmsg: CmsgBuf = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut h: libc::msghdr = unsafe { zeroed() };
    h.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
    h.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    h.msg_control = cmsg.as_mut_ptr().cast();
    h.msg_controllen = size_of::<CmsgBuf>();
    // SAFETY: every pointer in `h` refers to a live local or to `buf`, with its size.
    let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut h, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Datagram {
        // Never more than the buffer: a longer datagram is cut (MSG_TRUNC).
        len: (r as usize).min(buf.len()),
        // SAFETY: the kernel wrote `msg_namelen` bytes of address into `name`.
        from: unsafe { from_sockaddr(&name, h.msg_namelen) },
        // SAFETY: `h` was filled by the kernel and its control buffer is live.
        to: unsafe { destination(&h) },
    })
}

/// Send `datagram` to `to`, from the local address `from` when given (an address the
/// datagram it answers was sent to).
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    datagram: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_in6, msghdr and control buffer.
    let mut name: libc::sockaddr_in6 = unsafe { zeroed() };
    let namelen = to_sockaddr(to, &mut name);
    let mut iov = libc::iovec {
        iov_base: datagram.as_ptr().cast_mut().cast(),
        iov_len: datagram.len(),
    };
    let mut cmsg: CmsgBuf = [0; 16];
    // SAFETY: as above.
    let mut h: libc::msghdr = unsafe { zeroed() };
    h.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
    h.msg_namelen = namelen;
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    if let Some(from) = from {
        // SAFETY: `cmsg` is live and unmoved until the sendmsg below.
        unsafe { set_source(&mut h, &mut cmsg, from) };
    }
    // SAFETY: every pointer in `h` refers to a live local or to `datagram` (which the
    // kernel only reads), with its size.
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &h, libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The destination address in a received message's control data, if any.
///
/// # Safety
/// `h` must be a msghdr the kernel filled, whose control buffer is still live.
unsafe fn destination(h: &libc::msghdr) -> Option<IpAddr> {
    // What did fit is whole (the kernel only puts complete messages in the buffer).
    if h.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the CMSG_* helpers walk the control buffer within msg_controllen, and
    // each message's data is read as the type its level and type say it holds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                    // ipi_addr: the destination in the packet's header.
                    let ip = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                    return Some(IpAddr::V4(ip));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                    // An IPv4 client of a dual-stack socket: its address v4-mapped.
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr).to_canonical();
                    return Some(ip);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Attach a packet-info control message naming `from` as the source to `h`.
///
/// # Safety
/// `buf` must stay live (and unmoved) until `h` has been used.
unsafe fn set_source(h: &mut libc::msghdr, buf: &mut CmsgBuf, from: IpAddr) {
    h.msg_control = buf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure computations; the buffer holds
    // CMSG_SPACE(size_of::<in6_pktinfo>()) bytes, the larger of the two, so the first
    // header and its data fit.
    unsafe {
        match from {
            IpAddr::V4(ip) => {
                let len = size_of::<libc::in_pktinfo>() as u32;
                h.msg_controllen = libc::CMSG_SPACE(len) as usize;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(len) as usize;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
            }
            IpAddr::V6(ip) => {
                let len = size_of::<libc::in6_pktinfo>() as u32;
                h.msg_controllen = libc::CMSG_SPACE(len) as usize;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(len) as usize;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
            }
        }
    }
}
