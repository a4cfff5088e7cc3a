//! `VirtualPeer`: the background thread and its event loop.
//!
//! Each turn of the loop:
//!  1. wait for a datagram, no longer than the earliest of smoltcp's next
//!     deadline, the next WireGuard timer tick and the stop-flag check;
//!  2. drain every datagram already queued on the socket (up to a batch cap)
//!     through the WireGuard link; packets addressed to our tunnel addresses
//!     go to the device's receive queue, others are dropped;
//!  3. poll smoltcp (input, then output), run the services, poll again so
//!     what they wrote leaves in this turn;
//!  4. encrypt and send everything smoltcp emitted;
//!  5. every 250 ms, drive boringtun's timers; publish the stats.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use rand_core::{OsRng, RngCore};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::config::PeerConfig;
use crate::dns::NameTable;
use crate::phy::{stack_now, QueueDevice};
use crate::services::Services;
use crate::udp::BatchReceiver;
use crate::wg::{ip_destination, Link, LinkCounters};

/// boringtun wants `update_timers` about every 250 ms.
const TIMER_TICK: StdDuration = StdDuration::from_millis(250);
/// Longest single wait, so `stop` is noticed quickly.
const STOP_CHECK: StdDuration = StdDuration::from_millis(50);
/// Socket sends block at most this long (a full send buffer), then drop.
const SEND_TIMEOUT: StdDuration = StdDuration::from_millis(100);
/// Datagrams taken from the socket before the stack runs: enough to empty
/// a default-sized (208 KiB) receive buffer in one turn.
const RECV_BATCH: usize = 256;

/// What the peer has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// WireGuard handshakes completed with the client.
    pub handshakes: u64,
    /// Outer (UDP payload) bytes received, whether valid or not.
    pub rx_bytes: u64,
    /// Outer (UDP payload) bytes sent.
    pub tx_bytes: u64,
    pub rx_datagrams: u64,
    pub tx_datagrams: u64,
    /// Datagrams WireGuard rejected (failed authentication, replays, garbage).
    pub rejected_datagrams: u64,
    /// Decrypted packets dropped for not being addressed to a tunnel address.
    pub misaddressed_packets: u64,
    /// Datagrams that could not be sent (no client endpoint yet, or a socket error).
    pub send_failures: u64,
    /// Where the client was last heard from (roaming follows it).
    pub last_client_endpoint: Option<SocketAddr>,
}

/// A userspace WireGuard peer serving on a UDP socket from a background thread.
pub struct VirtualPeer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    thread: Option<JoinHandle<()>>,
}

impl VirtualPeer {
    /// Start serving on `socket` (already bound) in a background thread.
    /// A refused config is an `InvalidInput` error wrapping a [`ConfigError`](crate::ConfigError).
    pub fn start(config: PeerConfig, socket: UdpSocket) -> io::Result<VirtualPeer> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let local_addr = socket.local_addr()?;
        socket.set_nonblocking(false)?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        socket.set_read_timeout(Some(STOP_CHECK))?;

        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let event_loop = EventLoop::new(&config, socket, Arc::clone(&stop), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("virtual-peer".into())
            .spawn(move || event_loop.run())?;
        log::info!("virtual peer listening on {local_addr}");
        Ok(VirtualPeer {
            local_addr,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The UDP address the peer listens on (the client's Endpoint).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters (updated once per event-loop turn).
    pub fn stats(&self) -> Stats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stop the thread and join it (also done on drop). Returns within about
    /// 50 ms plus one event-loop turn. A panic in the thread is re-raised here.
    pub fn stop(mut self) {
        if let Err(panic) = self.shut_down() {
            std::panic::resume_unwind(panic);
        }
    }

    fn shut_down(&mut self) -> std::thread::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread.join(),
            None => Ok(()),
        }
    }
}

impl Drop for VirtualPeer {
    fn drop(&mut self) {
        if self.shut_down().is_err() && !std::thread::panicking() {
            log::error!("virtual peer thread panicked");
        }
    }
}

struct EventLoop {
    socket: UdpSocket,
    link: Link,
    device: QueueDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    services: Services,
    our_addrs: Vec<IpAddr>,
    misaddressed: u64,
    receiver: BatchReceiver,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
}

impl EventLoop {
    fn new(
        config: &PeerConfig,
        socket: UdpSocket,
        stop: Arc<AtomicBool>,
        stats: Arc<Mutex<Stats>>,
    ) -> EventLoop {
        let link = Link::new(
            &config.private_key,
            &config.client_public_key,
            config.preshared_key,
            config.persistent_keepalive,
            None,
            true,
        );
        let mut device = QueueDevice::new();
        let mut iface_config = Config::new(HardwareAddress::Ip);
        iface_config.random_seed = OsRng.next_u64();
        let mut iface = Interface::new(iface_config, &mut device, stack_now());
        iface.update_ip_addrs(|addrs| {
            // Capacity is smoltcp's default of two addresses: one per family.
            if let Some((a, prefix)) = config.tunnel_v4 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(a), prefix));
            }
            if let Some((a, prefix)) = config.tunnel_v6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(a), prefix));
            }
        });
        // The client may use addresses outside our subnets: route everything
        // back into the tunnel. With Medium::Ip the gateway is never looked
        // up, so our own address serves as a placeholder.
        if let Some((a, _)) = config.tunnel_v4 {
            let _ = iface.routes_mut().add_default_ipv4_route(a);
        }
        if let Some((a, _)) = config.tunnel_v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(a);
        }
        let mut sockets = SocketSet::new(Vec::new());
        let services = Services::new(&mut sockets, NameTable::new(&config.dns_names));
        EventLoop {
            socket,
            link,
            device,
            iface,
            sockets,
            services,
            our_addrs: config.tunnel_addrs(),
            misaddressed: 0,
            receiver: BatchReceiver::new(),
            stop,
            stats,
        }
    }

    fn run(mut self) {
        let mut next_tick = StdInstant::now() + TIMER_TICK;
        let mut published = Stats::default();
        while !self.stop.load(Ordering::Relaxed) {
            let wait = self.wait_budget(next_tick);
            self.receive(wait);

            let now = stack_now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            self.services.run(&mut self.sockets);
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            while let Some(packet) = self.device.pop_tx() {
                self.link.send(&self.socket, &packet);
            }

            if StdInstant::now() >= next_tick {
                self.link.tick(&self.socket);
                next_tick = StdInstant::now() + TIMER_TICK;
            }
            let stats = self.snapshot();
            if stats != published {
                *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = stats.clone();
                published = stats;
            }
        }
        log::info!("virtual peer stopped");
    }

    /// How long the next receive may block.
    fn wait_budget(&mut self, next_tick: StdInstant) -> StdDuration {
        let mut wait = STOP_CHECK.min(next_tick.saturating_duration_since(StdInstant::now()));
        if let Some(delay) = self.iface.poll_delay(stack_now(), &self.sockets) {
            wait = wait.min(StdDuration::from_micros(delay.total_micros()));
        }
        wait
    }

    /// Steps 1 and 2: wait up to `wait` for a datagram, then drain the socket.
    fn receive(&mut self, wait: StdDuration) {
        let EventLoop {
            link,
            socket,
            receiver,
            device,
            our_addrs,
            misaddressed,
            ..
        } = self;
        receiver.receive(socket, wait, RECV_BATCH, |from, datagram| {
            link.receive(
                socket,
                from,
                datagram,
                &mut |packet| match ip_destination(packet) {
                    Some(dst) if our_addrs.contains(&dst) => device.push_rx(packet),
                    _ => *misaddressed += 1,
                },
            );
        });
    }

    fn snapshot(&self) -> Stats {
        let LinkCounters {
            handshakes,
            rx_datagrams,
            rx_bytes,
            tx_datagrams,
            tx_bytes,
            rejected,
            send_failures,
        } = self.link.counters();
        Stats {
            handshakes,
            rx_bytes,
            tx_bytes,
            rx_datagrams,
            tx_datagrams,
            rejected_datagrams: rejected,
            misaddressed_packets: self.misaddressed,
            send_failures,
            last_client_endpoint: self.link.endpoint(),
        }
    }
}
