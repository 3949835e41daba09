//! DNS in the one pass: a lookup is kept when it fails (NXDOMAIN, SERVFAIL, REFUSED, no answer)
//! or names a host or address a kept flow uses. Its packets wait for the answer and for a kept
//! flow; a transaction leaves the table as soon as it is decided, so a flood of unanswered
//! queries costs the waiting queue's bound, not the capture's size.

use super::{Decision, Decoded, Engine, Event, FlowKey, Proto, Side, Verdict, WaitOn};
use crate::proto::dns;
use crate::wire::Addr;

/// A name as the DNS table and the kept names compare it: a hash of its lower-case form, so
/// that a flood of lookups costs eight bytes a name, not a string.
pub(super) fn name_key(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    for b in name.bytes() {
        b.to_ascii_lowercase().hash(&mut h);
    }
    h.finish()
}

/// A DNS query/response exchange, decided together.
pub(super) struct DnsTxn {
    pub(super) packets: Vec<u64>,
    /// `name_key`s of the names asked and answered.
    pub(super) names: Vec<u64>,
    pub(super) addrs: Vec<Addr>,
    pub(super) answered: bool,
}

impl Engine {
    pub(super) fn dns_packet(&mut self, key: FlowKey, side: Side, d: &Decoded<'_>, packet: u64) -> Decision {
        let Some(msg) = dns::parse(d.payload) else {
            return Decision::Now(Verdict::Drop);
        };
        if self.ev.on
            && let Some(f) = self.flows.get(&key)
        {
            self.ev.push(f.conv, key, side, Event::Dns(Box::new(msg.clone())));
        }
        let tk = (key, msg.id);
        if let Some(f) = self.flows.get_mut(&key) {
            f.proto = Proto::Dns;
            if f.why.is_empty() {
                f.why = "lookup of another name";
            }
        }
        let txn = self.dns.entry(tk).or_insert_with(|| DnsTxn {
            packets: Vec::new(),
            names: Vec::new(),
            addrs: Vec::new(),
            answered: false,
        });
        txn.names.extend(msg.names.iter().map(|n| name_key(n)));
        txn.addrs.extend(msg.addrs.iter().copied());
        txn.answered |= msg.response;
        let matched = msg.is_failure()
            || txn.names.iter().any(|n| self.kept_names.contains(n))
            || msg.names.iter().any(|n| self.opts.select.host_matches(n))
            || txn.addrs.iter().any(|a| self.kept_addrs.contains(a));
        if matched {
            if let Some(f) = self.flows.get_mut(&key) {
                f.why = if msg.is_failure() { "failed lookup" } else { "lookup of a kept host" };
            }
            self.count_dns_kept(key);
            let txn = self.dns.remove(&tk).expect("txn present");
            for p in txn.packets {
                self.resolved.push((p, Verdict::Keep));
            }
            return Decision::Now(Verdict::Keep);
        }
        txn.packets.push(packet);
        Decision::Wait(WaitOn::Dns(msg.id))
    }

    pub(super) fn count_dns_kept(&mut self, key: FlowKey) {
        if let Some(f) = self.flows.get_mut(&key)
            && !f.counted_kept
        {
            if matches!(f.why, "" | "lookup of another name") {
                f.why = "lookup of a kept host";
            }
            f.counted_kept = true;
            self.stats.flows_kept += 1;
        }
    }

    pub(super) fn resolve_dns_matches(&mut self) {
        if self.dns.is_empty() {
            return;
        }
        let hits: Vec<(FlowKey, u16)> = self
            .dns
            .iter()
            .filter(|(_, t)| {
                t.names.iter().any(|n| self.kept_names.contains(n))
                    || t.addrs.iter().any(|a| self.kept_addrs.contains(a))
            })
            .map(|(k, _)| *k)
            .collect();
        for tk in hits {
            self.count_dns_kept(tk.0);
            if let Some(txn) = self.dns.remove(&tk) {
                for p in txn.packets {
                    self.resolved.push((p, Verdict::Keep));
                }
            }
        }
    }

    /// Decides a DNS packet whose wait is over: kept when its lookup was never answered.
    pub(super) fn force_dns(&mut self, key: FlowKey, id: u16, packet: u64) -> Verdict {
        let tk = (key, id);
        // Decided, answered or not: the transaction is done with. (Unanswered ones
        // kept forever took a million lookups to over a gigabyte.) One table lookup:
        // a flood of unanswered queries forces one at every packet.
        let Some(mut t) = self.dns.remove(&tk) else {
            return Verdict::Drop;
        };
        let answered = t.answered;
        if t.packets.len() > 1 {
            t.packets.retain(|&p| p != packet);
            self.dns.insert(tk, t);
        }
        if answered {
            Verdict::Drop
        } else {
            if let Some(f) = self.flows.get_mut(&tk.0)
                && matches!(f.why, "" | "lookup of another name")
            {
                f.why = "unanswered lookup";
            }
            self.count_dns_kept(tk.0);
            Verdict::Keep
        }
    }
}
