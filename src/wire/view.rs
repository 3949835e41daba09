//! Views over IP headers in place, in smoltcp's `wire` style: a checked wrapper around the
//! bytes with getters for what is read and setters for what scrub rewrites (addresses, IPv4
//! options, checksums), so that no caller computes a field's offset by hand.

use super::checksum;

/// An IPv4 header at the start of `buf`.
pub struct Ipv4<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4<T> {
    /// The view, if `buf` starts with a whole IPv4 header (options included).
    pub fn new_checked(buf: T) -> Option<Ipv4<T>> {
        let b = buf.as_ref();
        let ihl = usize::from(*b.first()? & 0x0f) * 4;
        (b[0] >> 4 == 4 && ihl >= 20 && b.len() >= ihl).then_some(Ipv4 { buf })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0x0f) * 4
    }

    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }

    pub fn src(&self) -> [u8; 4] {
        self.buf.as_ref()[12..16].try_into().expect("checked length")
    }

    pub fn dst(&self) -> [u8; 4] {
        self.buf.as_ref()[16..20].try_into().expect("checked length")
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4<T> {
    pub fn set_src(&mut self, a: [u8; 4]) {
        self.buf.as_mut()[12..16].copy_from_slice(&a);
    }

    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.buf.as_mut()[16..20].copy_from_slice(&a);
    }

    /// The options (record route, timestamps, source routes), writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let n = self.header_len();
        &mut self.buf.as_mut()[20..n]
    }

    /// Computes the header checksum afresh (RFC 791).
    pub fn fill_checksum(&mut self) {
        let n = self.header_len();
        let b = self.buf.as_mut();
        b[10..12].fill(0);
        let v = !checksum::sum(&b[..n]);
        b[10..12].copy_from_slice(&v.to_be_bytes());
    }
}

/// An IPv6 header at the start of `buf`.
pub struct Ipv6<T> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6<T> {
    pub fn new_checked(buf: T) -> Option<Ipv6<T>> {
        let b = buf.as_ref();
        (b.len() >= 40 && b[0] >> 4 == 6).then_some(Ipv6 { buf })
    }

    pub fn src(&self) -> [u8; 16] {
        self.buf.as_ref()[8..24].try_into().expect("checked length")
    }

    pub fn dst(&self) -> [u8; 16] {
        self.buf.as_ref()[24..40].try_into().expect("checked length")
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6<T> {
    pub fn set_src(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[8..24].copy_from_slice(&a);
    }

    pub fn set_dst(&mut self, a: [u8; 16]) {
        self.buf.as_mut()[24..40].copy_from_slice(&a);
    }
}

/// A TCP or UDP header at the start of `buf`: the checksum field scrub rewrites.
pub struct Transport<T> {
    buf: T,
    field: usize,
}

impl<T: AsRef<[u8]>> Transport<T> {
    /// The view, for IP protocol 6 (TCP) or 17 (UDP), if its checksum field is in `buf`.
    pub fn new_checked(buf: T, proto: u8) -> Option<Transport<T>> {
        let field = match proto {
            6 => 16,
            17 => 6,
            _ => return None,
        };
        (buf.as_ref().len() >= field + 2).then_some(Transport { buf, field })
    }

    pub fn checksum(&self) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[self.field], b[self.field + 1]])
    }

    /// Where the checksum field is, from the header's start.
    pub fn checksum_offset(&self) -> usize {
        self.field
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Transport<T> {
    pub fn set_checksum(&mut self, v: u16) {
        let f = self.field;
        self.buf.as_mut()[f..f + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_fields_and_checksum() {
        let mut h = vec![0x46, 0, 0, 24, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 7, 3, 4, 0];
        let mut v = Ipv4::new_checked(&mut h[..]).unwrap();
        assert_eq!((v.header_len(), v.protocol(), v.src(), v.dst()), (24, 6, [10, 0, 0, 1], [10, 0, 0, 2]));
        v.set_src([192, 0, 2, 1]);
        v.options_mut().fill(1);
        v.fill_checksum();
        assert_eq!(checksum::sum(&h[..24]), 0xffff, "a right header sums to all ones");
        assert_eq!(&h[12..16], &[192, 0, 2, 1]);
        assert!(Ipv4::new_checked(&[0x45u8, 0, 0][..]).is_none());
        assert!(Ipv4::new_checked(&[0x60u8; 20][..]).is_none());
    }

    #[test]
    fn transport_checksum_field() {
        let mut tcp = [0u8; 20];
        let mut v = Transport::new_checked(&mut tcp[..], 6).unwrap();
        v.set_checksum(0xbeef);
        assert_eq!((v.checksum(), v.checksum_offset()), (0xbeef, 16));
        assert_eq!(&tcp[16..18], &[0xbe, 0xef]);
        assert!(Transport::new_checked(&[0u8; 7][..], 17).is_none());
        assert!(Transport::new_checked(&[0u8; 40][..], 1).is_none());
    }

    #[test]
    fn ipv6_addresses() {
        let mut h = [0x60u8; 40];
        let mut v = Ipv6::new_checked(&mut h[..]).unwrap();
        v.set_dst([9; 16]);
        assert_eq!(v.dst(), [9; 16]);
        assert_eq!(v.src(), [0x60; 16]);
        assert!(Ipv6::new_checked(&[0x45u8; 40][..]).is_none());
    }
}
