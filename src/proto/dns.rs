//! DNS messages (RFC 1035) as far as trimming and diagnosis need them: the names asked
//! about, the addresses answered, and the response code.

use simple_dns::rdata::RData;

use crate::wire::Addr;

pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_REFUSED: u8 = 5;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub rcode: u8,
    /// Question names and CNAME targets, lower-case, without the trailing dot.
    pub names: Vec<String>,
    pub addrs: Vec<Addr>,
}

impl Message {
    /// A failing lookup: always kept, it is often the whole story.
    pub fn is_failure(&self) -> bool {
        self.response && matches!(self.rcode, RCODE_NXDOMAIN | RCODE_SERVFAIL | RCODE_REFUSED)
    }
}

fn name(n: &simple_dns::Name<'_>) -> String {
    n.to_string().trim_end_matches('.').to_ascii_lowercase()
}

pub fn parse(b: &[u8]) -> Option<Message> {
    if b.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let response = b[2] & 0x80 != 0;
    let rcode = b[3] & 0x0f;
    let mut m = Message { id, response, rcode, ..Default::default() };
    // simple-dns rejects some real-world oddities; the header alone still carries the rcode.
    if let Ok(p) = simple_dns::Packet::parse(b) {
        m.names.extend(p.questions.iter().map(|q| name(&q.qname)));
        for rr in &p.answers {
            match &rr.rdata {
                RData::A(a) => m.addrs.push(Addr::v4(a.address.to_be_bytes())),
                RData::AAAA(a) => m.addrs.push(Addr::v6(a.address.to_be_bytes())),
                RData::CNAME(c) => m.names.push(name(&c.0)),
                _ => {}
            }
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nxdomain_response_is_a_failure() {
        let mut q = simple_dns::Packet::new_query(7);
        q.questions.push(simple_dns::Question::new(
            simple_dns::Name::new_unchecked("No-Such.test"),
            simple_dns::TYPE::A.into(),
            simple_dns::CLASS::IN.into(),
            false,
        ));
        let mut bytes = q.build_bytes_vec().unwrap();
        bytes[2] |= 0x80;
        bytes[3] = (bytes[3] & 0xf0) | RCODE_NXDOMAIN;
        let m = parse(&bytes).unwrap();
        assert!(m.is_failure());
        assert_eq!(m.names, vec!["no-such.test"]);
    }

    #[test]
    fn short_or_garbage_input_does_not_panic() {
        assert!(parse(&[1, 2, 3]).is_none());
        let _ = parse(&[0xff; 40]);
    }
}
