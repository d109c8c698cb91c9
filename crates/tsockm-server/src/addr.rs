//! Socket addresses as the contract writes them in SRC and DST.
//!
//! `host:port`, with an IPv6 host in brackets and in full (no `::`
//! compression, which would collide with the field separator). An
//! IPv4-mapped IPv6 address is written as the IPv4 address it maps.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Formats `addr` for a SRC or DST field, e.g. `[0:0:0:0:0:0:0:1]:6969`.
pub fn wire_addr(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(48);
            out.push('[');
            for (i, segment) in v6.segments().iter().enumerate() {
                if i > 0 {
                    out.push(':');
                }
                // Writing to a String cannot fail.
                let _ = write!(out, "{segment:x}");
            }
            let _ = write!(out, "]:{}", addr.port());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let cases = [
            ("127.0.0.1:6969", "127.0.0.1:6969"),
            ("[::1]:6969", "[0:0:0:0:0:0:0:1]:6969"),
            ("[::]:1", "[0:0:0:0:0:0:0:0]:1"),
            ("[fe80::1:abcd]:80", "[fe80:0:0:0:0:0:1:abcd]:80"),
            ("[::ffff:10.0.0.1]:5", "10.0.0.1:5"),
        ];
        for (input, expected) in cases {
            let addr: SocketAddr = input.parse().expect("a test address");
            assert_eq!(wire_addr(addr), expected);
            assert!(!wire_addr(addr).contains("::"));
        }
    }
}
