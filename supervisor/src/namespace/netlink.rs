//! The real [`NetOps`]: rtnetlink requests, each acknowledged before the next.

use crate::namespace::netsetup::NetOps;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;
use wgconf::IpNet;

pub struct Rtnetlink {
    socket: Socket,
    seq: u32,
}

impl Rtnetlink {
    pub fn open() -> io::Result<Rtnetlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnetlink { socket, seq: 0 })
    }

    /// Send one request and wait for its acknowledgement.
    fn request(&mut self, message: RouteNetlinkMessage, extra_flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = NetlinkMessage::from(message);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = reply.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_message(index: u32, dest: IpNet) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(dest.addr());
    msg.header.destination_prefix_length = dest.prefix();
    msg.header.table = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = RouteScope::Link;
    msg.header.kind = RouteType::Unicast;
    if dest.prefix() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dest.addr())));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    msg
}

impl NetOps for Rtnetlink {
    fn set_link_up(&mut self, index: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        link.header.flags = LinkFlags::Up;
        link.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::NewLink(link), 0)
    }

    fn add_address(&mut self, index: u32, addr: IpNet) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr.addr());
        msg.header.prefix_len = addr.prefix();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        msg.attributes.push(AddressAttribute::Address(addr.addr()));
        // No duplicate address detection: nothing else can be on a point-to-point TUN,
        // and a tentative IPv6 address would fail early connects for a second.
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    fn add_route(&mut self, index: u32, dest: IpNet) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::NewRoute(route_message(index, dest)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    fn del_route(&mut self, index: u32, dest: IpNet) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelRoute(route_message(index, dest)), 0)
    }

    fn allow_ping_for_group(&mut self, gid: u32) -> io::Result<()> {
        std::fs::write(
            "/proc/sys/net/ipv4/ping_group_range",
            format!("{gid} {gid}\n"),
        )
    }

    fn disable_ipv6(&mut self, index: u32) -> io::Result<()> {
        // The per-device IPv6 settings are sysctls named after the device, and
        // rtnetlink cannot set them (IFLA_INET6_CONF is read-only).
        if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
            return Ok(()); // No IPv6 in this kernel (ipv6.disable=1): nothing to turn off.
        }
        let name = rustix::net::netdevice::index_to_name(&self.socket, index)?;
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"),
            "1\n",
        )
    }
}
