//! The units of the file: sizes, durations, listen addresses, networks
//! and whether a list of them covers a whole address family.

use std::net::IpAddr;
use std::time::Duration;

use super::super::units::{
    covers_family, format_duration, format_size, parse_duration, parse_listen, parse_size,
};
use super::super::*;
use super::{MIB, addr, nets, secs};

#[test]
fn sizes() {
    let good = [
        ("0", 0),
        ("512", 512),
        ("512 B", 512),
        ("25 MiB", 25 * MIB),
        ("25MiB", 25 * MIB),
        ("25 mib", 25 * MIB),
        ("100 KiB", 102_400),
        ("10 MB", 10_000_000),
        ("1.5 GiB", 3 << 29),
        ("1 TiB", 1 << 40),
        ("18446744073709551615", u64::MAX),
    ];
    for (text, want) in good {
        assert_eq!(parse_size(text), Ok(want), "{text:?}");
    }
    for text in [
        "",
        "MiB",
        "25 MB?",
        "25M",
        "1.5.1 MiB",
        "1. MiB",
        ".5 MiB",
        "0.1 KiB",
        "-1",
        "16 EiB",
        "99999999999 TiB",
    ] {
        assert!(parse_size(text).is_err(), "{text:?}");
    }
    for n in [
        0,
        1,
        998,
        102_400,
        25 * MIB,
        3 << 29,
        u64::MAX,
        i64::MAX as u64 + 1,
    ] {
        let text = format_size(n);
        let back = match text.strip_prefix('"') {
            Some(s) => parse_size(s.trim_end_matches('"')),
            None => parse_size(&text),
        };
        assert_eq!(back, Ok(n), "{text}");
    }
    assert_eq!(format_size(25 * MIB), "\"25 MiB\"");
    assert_eq!(format_size(10_240_000), "\"10000 KiB\"");
    assert_eq!(format_size(10_000_000), "10000000");
}

#[test]
fn durations() {
    let good = [
        ("300s", 300),
        ("5m", 300),
        ("5min", 300),
        ("4000s", 4000),
        ("1h", 3600),
        ("1h 30m", 5400),
        ("5d", 432_000),
        ("2 days", 172_800),
        ("1w", 604_800),
    ];
    for (text, want) in good {
        assert_eq!(parse_duration(text), Ok(secs(want)), "{text:?}");
    }
    for text in ["", "5", "5M", "5 minuts", "soon"] {
        assert!(parse_duration(text).is_err(), "{text:?}");
    }
    let rendered = [
        (300, "5m"),
        (4000, "4000s"),
        (432_000, "5d"),
        (3600, "1h"),
        (1_209_600, "2w"),
    ];
    for (s, want) in rendered {
        assert_eq!(format_duration(secs(s)), want);
    }
    let odd = Duration::from_millis(1500);
    assert_eq!(parse_duration(&format_duration(odd)), Ok(odd));
}

#[test]
fn listen_addresses() {
    assert_eq!(parse_listen("127.0.0.1:25"), Ok(addr("127.0.0.1:25")));
    assert_eq!(parse_listen("[::1]:25"), Ok(addr("[::1]:25")));
    for bad in [
        "",
        "127.0.0.1",
        "::1",
        "localhost:25",
        "127.0.0.1:99999",
        "[::1]",
    ] {
        assert!(parse_listen(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn cidr_parsing_and_matching() {
    // (network, address, contained)
    let cases = [
        ("127.0.0.0/8", "127.0.0.1", true),
        ("127.0.0.0/8", "128.0.0.1", false),
        ("127.0.0.0/8", "::ffff:127.0.0.1", true),
        ("127.0.0.0/8", "::127.0.0.1", false),
        ("::1/128", "::1", true),
        ("::1", "::1", true),
        ("::1/128", "0.0.0.1", false),
        ("192.0.2.7", "192.0.2.7", true),
        ("192.0.2.7", "192.0.2.8", false),
        ("fd00::/8", "fd12:3456::1", true),
        ("fd00::/8", "fe80::1", false),
        ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
        ("10.0.0.0/8", "fd00::a00:1", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("::/0", "203.0.113.9", false),
    ];
    for (net, ip, want) in cases {
        let cidr: Cidr = net.parse().unwrap();
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(cidr.contains(ip), want, "{net} contains {ip}");
    }
    let shown: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(shown.to_string(), "10.0.0.0/8");
    assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().prefix_len(), 32);
    for bad in [
        "10.0.0.1/8",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/129",
        "::/129",
        "fe80::1%eth0",
        "",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
    }
}

#[test]
fn family_coverage() {
    let cases: &[(&[&str], bool, bool)] = &[
        (&["0.0.0.0/0"], true, false),
        (&["0.0.0.0/1", "128.0.0.0/1"], true, false),
        (&["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"], true, false),
        (&["0.0.0.0/1", "128.0.0.0/2"], false, false),
        (&["::/1", "8000::/1"], false, true),
        (&["127.0.0.0/8", "::1/128"], false, false),
    ];
    for (list, v4, v6) in cases {
        let nets = nets(list);
        assert_eq!(covers_family(&nets, true), *v4, "{list:?} v4");
        assert_eq!(covers_family(&nets, false), *v6, "{list:?} v6");
    }
}
