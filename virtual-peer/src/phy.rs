//! The smoltcp device between the WireGuard link and the IP stack: two
//! packet queues. Decrypted packets are pushed into `rx` before a poll;
//! whatever smoltcp transmits lands in `tx`, to be encrypted after the poll.
//! `Medium::Ip`: WireGuard carries bare IP packets, no link-layer header.

use std::collections::VecDeque;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

/// WireGuard's default tunnel MTU (wg-quick's 1420: 1500 minus the 80 bytes
/// of outer IPv6 + UDP + WireGuard overhead).
pub const TUNNEL_MTU: usize = 1420;

/// Bound on queued outgoing packets: a poll that would emit more stops
/// there (smoltcp sees "no transmit token" and retries on the next poll),
/// so memory stays bounded however large the TCP windows are.
const TX_QUEUE_LIMIT: usize = 1024;

/// The stack's clock. smoltcp's own `Instant::now()` reads the wall clock
/// (`SystemTime`), which NTP may step; TCP timers want a monotonic one.
pub fn stack_now() -> Instant {
    Instant::from(std::time::Instant::now())
}

#[derive(Debug, Default)]
pub struct QueueDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

impl QueueDevice {
    pub fn new() -> QueueDevice {
        QueueDevice::default()
    }

    /// Queue a decrypted IP packet for the next poll.
    pub fn push_rx(&mut self, packet: &[u8]) {
        self.rx.push_back(packet.to_vec());
    }

    /// Take the next packet smoltcp emitted.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }
}

pub struct QueueRxToken {
    packet: Vec<u8>,
}

impl RxToken for QueueRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.packet)
    }
}

pub struct QueueTxToken<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
}

impl TxToken for QueueTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut packet = vec![0u8; len];
        let result = f(&mut packet);
        self.tx.push_back(packet);
        result
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = QueueRxToken;
    type TxToken<'a> = QueueTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // Replies generated while processing a packet (ICMP echo, TCP ACK/RST)
        // go to `tx` like any other output, so the limit is not applied here:
        // refusing the TX token would make smoltcp drop the reply.
        let packet = self.rx.pop_front()?;
        Some((QueueRxToken { packet }, QueueTxToken { tx: &mut self.tx }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx.len() >= TX_QUEUE_LIMIT {
            return None;
        }
        Some(QueueTxToken { tx: &mut self.tx })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = TUNNEL_MTU;
        // Checksums stay on (the default) in both directions: the other end
        // is a real kernel stack that verifies ours, and verifying theirs
        // catches bugs in hand-built test packets.
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_in_order_and_limits_transmit() {
        let mut dev = QueueDevice::new();
        dev.push_rx(&[1]);
        dev.push_rx(&[2]);
        let now = Instant::from_millis(0);
        let (rx, _) = dev.receive(now).unwrap();
        assert_eq!(rx.consume(|p| p.to_vec()), vec![1]);
        assert_eq!(dev.rx.len(), 1);
        for i in 0..TX_QUEUE_LIMIT {
            let tx = dev.transmit(now).expect("below the limit");
            tx.consume(3, |p| p[0] = i as u8);
        }
        assert!(dev.transmit(now).is_none());
        assert_eq!(dev.pop_tx().unwrap(), vec![0, 0, 0]);
        assert!(dev.transmit(now).is_some());
        assert_eq!(dev.capabilities().medium, Medium::Ip);
    }
}
